"""Holder of `lfm_runtime`, the stdlib-only package copied into every archive (`.lfm/runtime/`).

The directory is a package only so that lfm-pack itself (``lfm-pack monitor``, tests, mypy) can
import the same code as ``lfm_pack.launch.runtime.lfm_runtime``; inside a pack it is imported as
top-level ``lfm_runtime``. Therefore every module in it uses relative imports only.
"""
