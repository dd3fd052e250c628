"""Probe the target Python environment once, in a subprocess.

lfm-pack may live in its own venv (or pipx) and analyze another environment, so everything
version- or platform-dependent (stdlib names, markers, sys.path, extension suffixes) must come
from the *target* interpreter, never from the one running lfm-pack. The probe is a small
stdlib-only script run with `-I` (isolated: no PYTHONPATH, no user site, no cwd on sys.path),
so no user or third-party code is imported in either process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from lfm_pack.errors import EnvironmentProbeError, UsageError
from lfm_pack.models import EnvInfo, EnvKind

# Runs inside the target interpreter; must stay compatible with old Pythons (3.6+ syntax).
_PROBE = r"""
import json, os, platform, sys, sysconfig
try:
    from importlib.machinery import EXTENSION_SUFFIXES as ext
except Exception:
    ext = []
def fv(info):
    v = "%d.%d.%d" % (info.major, info.minor, info.micro)
    if info.releaselevel != "final":
        v += info.releaselevel[0] + str(info.serial)
    return v
names = getattr(sys, "stdlib_module_names", None)
paths = sysconfig.get_paths()
if names is None:
    names = set()
    for d in (paths["stdlib"], os.path.join(paths["stdlib"], "lib-dynload")):
        try:
            entries = os.listdir(d)
        except OSError:
            continue
        for e in entries:
            base = e.split(".")[0]
            if base and base != "site-packages" and not base.startswith("_test"):
                names.add(base)
try:
    glibc = os.confstr("CS_GNU_LIBC_VERSION")
except (AttributeError, ValueError, OSError):
    glibc = None
markers = {
    "implementation_name": sys.implementation.name,
    "implementation_version": fv(sys.implementation.version),
    "os_name": os.name,
    "platform_machine": platform.machine(),
    "platform_release": platform.release(),
    "platform_system": platform.system(),
    "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "platform_python_implementation": platform.python_implementation(),
    "python_version": ".".join(platform.python_version_tuple()[:2]),
    "sys_platform": sys.platform,
}
base_exe = getattr(sys, "_base_executable", None) or sys.executable
print(json.dumps({
    "executable": sys.executable,
    "base_executable": base_exe,
    "prefix": sys.prefix,
    "base_prefix": getattr(sys, "base_prefix", sys.prefix),
    "version": list(sys.version_info[:3]),
    "implementation": sys.implementation.name,
    "markers": markers,
    "sys_path": [p for p in sys.path if p],
    "stdlib_modules": sorted(names),
    "builtin_modules": sorted(sys.builtin_module_names),
    "stdlib_dir": paths["stdlib"],
    "platstdlib_dir": paths["platstdlib"],
    "site_packages": [paths["purelib"], paths["platlib"]],
    "ext_suffixes": list(ext),
    "platform": sysconfig.get_platform(),
    "machine": platform.machine(),
    "glibc": glibc.split()[-1] if glibc and glibc.startswith("glibc") else None,
    "libdir": sysconfig.get_config_var("LIBDIR"),
    "ldlibrary": sysconfig.get_config_var("LDLIBRARY"),
    "soabi": sysconfig.get_config_var("SOABI"),
}))
"""

PROBE_TIMEOUT_S = 60.0
PROBE_MAX_OUTPUT = 16 << 20  # the real probe prints ~30 KB; `--python /usr/bin/yes` must not OOM


class _TooMuchOutput(Exception):
    """The probed program wrote more than PROBE_MAX_OUTPUT bytes (it is not the probe)."""


def _run_bounded(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `cmd` with stdin closed, a deadline and a cap on its output.

    `subprocess.run(capture_output=True)` buffers without limit, so pointing --python at a
    program that prints forever (`yes`) would eat memory until the timeout. Output goes to
    anonymous temp files whose size is polled; the child is killed past the cap or deadline.
    """
    import tempfile
    import time

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as errf:
        child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=errf, env=env)
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        poll = 0.002  # grows to 50 ms: a real probe (~40 ms) is not slowed down
        try:
            while True:
                try:
                    child.wait(timeout=poll)
                    break
                except subprocess.TimeoutExpired:
                    poll = min(poll * 2, 0.05)
                if os.fstat(out.fileno()).st_size + os.fstat(errf.fileno()).st_size > (
                    PROBE_MAX_OUTPUT
                ):
                    raise _TooMuchOutput()
                if time.monotonic() > deadline:
                    raise subprocess.TimeoutExpired(cmd, PROBE_TIMEOUT_S)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        out.seek(0)
        errf.seek(0)
        stdout = out.read(PROBE_MAX_OUTPUT).decode("utf-8", "replace")
        stderr = errf.read(PROBE_MAX_OUTPUT).decode("utf-8", "replace")
    return subprocess.CompletedProcess(cmd, child.returncode, stdout, stderr)


def _interpreter_in(prefix: Path) -> Path | None:
    """The interpreter of a venv or conda prefix (POSIX layout)."""
    for name in ("python3", "python"):
        cand = prefix / "bin" / name
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    return None


def default_interpreter() -> str:
    """The active environment: $VIRTUAL_ENV, then $CONDA_PREFIX, then lfm-pack's own."""
    for var in ("VIRTUAL_ENV", "CONDA_PREFIX"):
        value = os.environ.get(var)
        if value:
            found = _interpreter_in(Path(value))
            if found is not None:
                return str(found)
    return sys.executable


def choose_interpreter(python: str | None, prefix: str | None) -> str:
    """Turn --python / --prefix (mutually exclusive) into an interpreter path, or fail clearly."""
    if python and prefix:
        raise UsageError(
            "--python and --prefix are mutually exclusive",
            hint="give the interpreter (--python PATH) or the environment root (--prefix DIR)",
        )
    if prefix:
        root = Path(prefix).expanduser()
        if not root.is_dir():
            raise EnvironmentProbeError(
                f"--prefix {prefix}: no such directory",
                hint="pass the root of a venv or conda environment",
            )
        found = _interpreter_in(root)
        if found is None:
            raise EnvironmentProbeError(
                f"--prefix {prefix} is not a Python environment (no bin/python3 or bin/python)",
                hint="pass the root of a venv or conda environment, or use --python PATH",
            )
        return str(found.absolute())
    if python:
        path = Path(python).expanduser()
        if os.sep not in python:
            # A bare name (`--python python3.11`) means what it means in a shell: a command
            # on PATH, never a file of the current directory (that is `./name`). The path
            # found is kept as is, not resolved: a venv's python is a symlink.
            found_on_path = shutil.which(python)
            if found_on_path is not None:
                return str(Path(found_on_path).absolute())
            here = " (a file of that name is here: pass ./" + python + ")" if path.exists() else ""
            raise EnvironmentProbeError(
                f"--python {python}: not found on PATH{here}",
                hint="give the interpreter's path, or a command name on PATH such as python3",
            )
        if not path.exists():
            raise EnvironmentProbeError(
                f"--python {python}: no such file", hint="pass the path of a Python interpreter"
            )
        if path.is_dir():
            found = _interpreter_in(path)
            if found is None:
                raise EnvironmentProbeError(
                    f"--python {python} is a directory, not an interpreter",
                    hint="use --prefix for environment directories",
                )
            return str(found.absolute())
        # absolute(), not resolve(): a venv's bin/python symlink must keep its own path (its
        # sys.prefix depends on it); and never a bare name, which exec would look up on $PATH.
        return str(path.absolute())
    return default_interpreter()


def _env_kind(prefix: str, base_prefix: str) -> EnvKind:
    if (Path(prefix) / "conda-meta").is_dir():
        return "conda"
    if os.path.realpath(prefix) != os.path.realpath(base_prefix):
        return "venv"
    return "system"


def _dedup(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def from_probe_json(data: dict[str, Any]) -> EnvInfo:
    """Build EnvInfo from the probe's JSON (also used to re-create it from a lock file)."""
    v = data["version"]
    return EnvInfo(
        executable=data["executable"],
        base_executable=data.get("base_executable") or data["executable"],
        prefix=data["prefix"],
        base_prefix=data["base_prefix"],
        kind=data.get("kind") or _env_kind(data["prefix"], data["base_prefix"]),
        version=(int(v[0]), int(v[1]), int(v[2])),
        implementation=data["implementation"],
        markers=tuple(sorted(data["markers"].items())),
        sys_path=tuple(data["sys_path"]),
        stdlib_modules=frozenset(data["stdlib_modules"]),
        builtin_modules=frozenset(data["builtin_modules"]),
        stdlib_dir=data["stdlib_dir"],
        platstdlib_dir=data["platstdlib_dir"],
        site_packages=_dedup(list(data["site_packages"])),
        ext_suffixes=tuple(data["ext_suffixes"]),
        platform=data["platform"],
        machine=data["machine"],
        glibc=data.get("glibc"),
        libdir=data.get("libdir"),
        ldlibrary=data.get("ldlibrary"),
        soabi=data.get("soabi"),
    )


def env_to_json(env: EnvInfo) -> dict[str, Any]:
    """The inverse of `from_probe_json` (kept in the lock so `pack --lock` needs no re-probe)."""
    return {
        "executable": env.executable,
        "base_executable": env.base_executable,
        "prefix": env.prefix,
        "base_prefix": env.base_prefix,
        "kind": env.kind,
        "version": list(env.version),
        "implementation": env.implementation,
        "markers": dict(env.markers),
        "sys_path": list(env.sys_path),
        "stdlib_modules": sorted(env.stdlib_modules),
        "builtin_modules": sorted(env.builtin_modules),
        "stdlib_dir": env.stdlib_dir,
        "platstdlib_dir": env.platstdlib_dir,
        "site_packages": list(env.site_packages),
        "ext_suffixes": list(env.ext_suffixes),
        "platform": env.platform,
        "machine": env.machine,
        "glibc": env.glibc,
        "libdir": env.libdir,
        "ldlibrary": env.ldlibrary,
        "soabi": env.soabi,
    }


def _first_words(stderr: str, limit: int = 160) -> str:
    """The gist of a failed probe's stderr, on one line and short.

    A program that is not Python (`--python /bin/ls`) echoes its arguments, i.e. the whole
    probe script, back: the user needs to know it failed, not to read our source.
    """
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    text = lines[-1] if lines else "no output"
    if "import json" in text or len(text) > limit:
        text = text[:limit].split("$'", 1)[0].split("import json", 1)[0].rstrip(" '$:") + " …"
    return text


def probe(python: str | None = None, prefix: str | None = None) -> EnvInfo:
    """Run the target interpreter once (isolated) and describe it.

    Raises EnvironmentProbeError with a hint when the path is not a working interpreter.
    """
    exe = choose_interpreter(python, prefix)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    try:
        proc = _run_bounded([exe, "-I", "-c", _PROBE], env)
    except PermissionError as exc:
        raise EnvironmentProbeError(
            f"{exe} is not executable ({exc.strerror})", hint="check the path and its mode"
        ) from exc
    except OSError as exc:
        raise EnvironmentProbeError(
            f"cannot run {exe}: {exc.strerror or exc}",
            hint="pass a Python interpreter with --python or an environment with --prefix",
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise EnvironmentProbeError(
            f"{exe} did not answer the probe within {PROBE_TIMEOUT_S:.0f} s",
            hint="is it a Python interpreter?",
        ) from exc
    except _TooMuchOutput as exc:
        raise EnvironmentProbeError(
            f"{exe} is not a Python interpreter: it wrote more than "
            f"{PROBE_MAX_OUTPUT >> 20} MiB in answer to the probe",
            hint="pass a CPython interpreter with --python or an environment with --prefix",
        ) from exc
    if proc.returncode != 0:
        raise EnvironmentProbeError(
            f"{exe} failed the probe (exit {proc.returncode}): {_first_words(proc.stderr)}",
            hint="lfm-pack needs a working CPython interpreter for the target",
        )
    try:
        data = json.loads(proc.stdout.strip().splitlines()[-1])
        version = [int(x) for x in data["version"][:3]]
        if version[:2] < [3, 8]:
            raise EnvironmentProbeError(
                f"{exe} is Python {'.'.join(map(str, version))}; lfm-pack supports 3.8+ targets",
                hint="use a newer interpreter for the target environment",
            )
        return from_probe_json(data)
    except (ValueError, IndexError, KeyError, TypeError, AttributeError) as exc:
        # Anything that is not the probe's own JSON (a wrapper script printing something else).
        raise EnvironmentProbeError(
            f"{exe} is not a Python interpreter lfm-pack understands (unexpected probe output)",
            hint="pass a CPython interpreter",
        ) from exc
