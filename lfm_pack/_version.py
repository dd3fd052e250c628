"""The one version number of lfm-pack.

It lives in the node runtime (`lfm_runtime.__version__`), because the runtime travels inside
every pack and writes it into every report; the host, its manifests, locks and caches read it
from there, so a pack and the tool that built it can never disagree. This module exists so the
stage modules can import the version without importing `lfm_pack` itself (whose `__init__`
loads the whole Python API): stages must not import upwards.
"""

from lfm_pack.launch.runtime.lfm_runtime import __version__

__all__ = ["__version__"]
