"""`--compile`: ship bytecode that stays valid after extraction.

Installer-written `.pyc` files are timestamp-checked against the source mtime, which the
deterministic archive resets, so they would be stale on the node (and are never shipped).
With --compile every shipped `.py` is compiled by the target interpreter itself (same magic
number) into *unchecked-hash* pycs (PEP 552): valid wherever and whenever extracted, so a cold
node on a shared filesystem skips compiling thousands of modules. Output is deterministic.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from lfm_pack.errors import PackError
from lfm_pack.models import EnvInfo
from lfm_pack.pack.archive import Entry

_SCRIPT = r"""
import json, os, py_compile, sys
jobs = json.load(open(sys.argv[1]))
tag = sys.implementation.cache_tag
done = []
for src, arc, out_root in jobs:
    d, fn = os.path.split(arc)
    rel = os.path.join(d, "__pycache__", fn[:-3] + "." + tag + ".pyc")
    try:
        py_compile.compile(src, cfile=os.path.join(out_root, rel), dfile=arc, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    except (py_compile.PyCompileError, SyntaxError, UnicodeError, ValueError):
        continue  # templates and py2-only files in packages' data dirs: ship them uncompiled
    done.append(rel)
json.dump(done, sys.stdout)
"""


def compile_entries(entries: Sequence[Entry], env: EnvInfo, staging: Path) -> list[Entry]:
    """Compile the `.py` entries with the target interpreter; return the new pyc entries."""
    staging.mkdir(parents=True, exist_ok=True)
    src_dir = staging / "src"
    out_root = staging / "out"
    jobs = []
    for i, e in enumerate(entries):
        if (
            e.kind != "file"
            or not e.arcname.endswith(".py")
            or e.arcname.startswith(".lfm/runtime")
        ):
            continue
        if e.data is not None:
            p = src_dir / f"{i}.py"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(e.data)
            src = str(p)
        else:
            assert e.source is not None
            src = e.source
        jobs.append((src, e.arcname, str(out_root)))
    job_file = staging / "jobs.json"
    job_file.write_text(json.dumps(jobs))
    exe = os.path.realpath(env.base_executable)
    proc = subprocess.run([exe, "-I", "-c", _SCRIPT, str(job_file)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise PackError(f"--compile failed: {proc.stderr.strip()[-500:]}")
    done: list[str] = json.loads(proc.stdout)
    return [Entry(rel, source=str(out_root / rel)) for rel in done]
