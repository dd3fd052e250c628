"""parse_target: every accepted form, and every error path as a TargetError with exit code 3."""

from __future__ import annotations

import dataclasses
import importlib.machinery
import sys
from pathlib import Path

import pytest

from lfm_pack.analyze.environment import probe
from lfm_pack.analyze.modpath import clear_caches
from lfm_pack.analyze.targets import parse_target
from lfm_pack.errors import ExitCode, TargetError
from lfm_pack.models import EnvInfo

JOB = """\
import sys


def main():
    return 1


def process_batch():
    return 2


class Worker:
    def run(self):
        return 3

    class Inner:
        def go(self):
            return 4


if sys.platform == "win32":
    def platform_only():
        return 5
"""


@pytest.fixture(scope="session")
def env() -> EnvInfo:
    return probe()


@pytest.fixture()
def proj(tmp_path: Path) -> Path:
    clear_caches()
    (tmp_path / "job.py").write_text(JOB)
    return tmp_path


def err(raw: str, env: EnvInfo, cwd: Path) -> TargetError:
    with pytest.raises(TargetError) as info:
        parse_target(raw, env, str(cwd))
    assert info.value.exit_code == ExitCode.TARGET == 3
    assert info.value.hint
    assert "\n" not in info.value.message
    return info.value


# ------------------------------------------------------------------ accepted forms


def test_file_function(env: EnvInfo, proj: Path) -> None:
    spec = parse_target("job.py:main", env, str(proj))
    assert (spec.kind, spec.path, spec.module, spec.qualname) == (
        "file",
        str(proj / "job.py"),
        None,
        "main",
    )
    assert spec.raw == "job.py:main"


def test_file_class_method_nested_class_and_conditional_def(env: EnvInfo, proj: Path) -> None:
    assert parse_target("job.py:Worker.run", env, str(proj)).qualname == "Worker.run"
    assert parse_target("job.py:Worker.Inner.go", env, str(proj)).qualname == "Worker.Inner.go"
    assert parse_target("job.py:Worker", env, str(proj)).qualname == "Worker"
    assert parse_target("job.py:platform_only", env, str(proj)).qualname == "platform_only"


def test_whole_script_and_absolute_path(env: EnvInfo, proj: Path, tmp_path: Path) -> None:
    spec = parse_target(str(proj / "job.py"), env, "/")
    assert spec.qualname is None and spec.path == str(proj / "job.py") and spec.kind == "file"


def test_module_forms_in_cwd_and_on_env_path(env: EnvInfo, proj: Path, tmp_path: Path) -> None:
    pkg = proj / "tools"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "convert.py").write_text("def to_yaml():\n    pass\n")
    spec = parse_target("tools.convert:to_yaml", env, str(proj))
    assert (spec.kind, spec.module, spec.qualname) == ("module", "tools.convert", "to_yaml")
    assert spec.path == str(pkg / "convert.py")
    whole = parse_target("tools.convert", env, str(proj))
    assert whole.qualname is None and whole.module == "tools.convert"
    # On the *target* environment's path (here: an extra sys.path entry), not lfm-pack's.
    elsewhere = tmp_path / "site"
    elsewhere.mkdir()
    (elsewhere / "remote_mod.py").write_text("def f():\n    pass\n")
    env2 = dataclasses.replace(env, sys_path=(*env.sys_path, str(elsewhere)))
    assert parse_target("remote_mod:f", env2, "/").path == str(elsewhere / "remote_mod.py")
    err("remote_mod:f", env, Path("/"))
    pkg_target = parse_target("tools", env, str(proj))
    assert pkg_target.path == str(pkg / "__init__.py")


def test_pep263_cookie_and_bom_are_honoured(env: EnvInfo, tmp_path: Path) -> None:
    (tmp_path / "latin.py").write_bytes(
        b"# -*- coding: latin-1 -*-\nNAME = '\xe9t\xe9'\ndef f():\n    return NAME\n"
    )
    assert parse_target("latin.py:f", env, str(tmp_path)).qualname == "f"
    (tmp_path / "bom.py").write_bytes(b"\xef\xbb\xbfdef g():\n    return '\xc3\xa9'\n")
    assert parse_target("bom.py:g", env, str(tmp_path)).qualname == "g"


def test_newer_grammar_than_the_host_is_accepted(env: EnvInfo, tmp_path: Path) -> None:
    """`type X = int` (3.12) parses with libcst for a 3.12 target even when the host's ast
    cannot; for a target as old as the host, the host's SyntaxError is the verdict."""
    from lfm_pack.analyze.reach import with_guard_env

    (tmp_path / "new.py").write_text("type Alias = int\n\ndef f():\n    return 1\n")
    newer = with_guard_env(env, (sys.version_info[0], sys.version_info[1] + 1, 0))
    assert parse_target("new.py:f", newer, str(tmp_path)).qualname == "f"
    if sys.version_info < (3, 12):
        with pytest.raises(TargetError, match=r"new\.py:1: syntax error"):
            parse_target("new.py:f", env, str(tmp_path))


# ------------------------------------------------------------------ error paths


def test_missing_file(env: EnvInfo, proj: Path) -> None:
    e = err("nope.py:main", env, proj)
    assert "no such file" in e.message and "nope.py" in e.message


def test_not_a_python_file(env: EnvInfo, proj: Path) -> None:
    (proj / "data.txt").write_text("x")
    assert "not a .py" in err("data.txt:main", env, proj).message
    (proj / "adir").mkdir()
    assert "directory" in err("adir/", env, proj).message


def test_syntax_error_reports_file_and_line(env: EnvInfo, proj: Path) -> None:
    (proj / "bad.py").write_text("def ok():\n    pass\n\ndef broken(:\n    pass\n")
    e = err("bad.py:ok", env, proj)
    assert f"{proj / 'bad.py'}:4:" in e.message and "syntax error" in e.message


def test_function_not_found_suggests_close_names(env: EnvInfo, proj: Path) -> None:
    e = err("job.py:process_bach", env, proj)
    assert "process_bach" in e.message
    assert e.hint is not None and "process_batch" in e.hint
    e = err("job.py:Worker.runn", env, proj)
    assert e.hint is not None and "Worker.run" in e.hint
    e = err("job.py:zzzzzz", env, proj)
    assert e.hint is not None and "defined here" in e.hint


def test_invalid_qualname(env: EnvInfo, proj: Path) -> None:
    assert "not a function" in err("job.py:1abc", env, proj).message
    assert "empty" in err("  ", env, proj).message


def test_undecodable_source(env: EnvInfo, tmp_path: Path) -> None:
    (tmp_path / "latin_nocookie.py").write_bytes(b"NAME = '\xe9t\xe9'\ndef f():\n    pass\n")
    assert "not UTF-8" in err("latin_nocookie.py:f", env, tmp_path).message
    (tmp_path / "latin_late.py").write_bytes(b"\n\n\nNAME = '\xe9t\xe9'\ndef f():\n    pass\n")
    assert "not valid utf-8" in err("latin_late.py:f", env, tmp_path).message
    (tmp_path / "nul.py").write_bytes(b"def f():\n    return '\x00'\n")
    assert "null byte" in err("nul.py:f", env, tmp_path).message
    (tmp_path / "badcookie.py").write_bytes(b"# coding: no-such-codec\ndef f():\n    pass\n")
    assert "encoding" in err("badcookie.py:f", env, tmp_path).message


def test_directory_named_like_a_source_file(env: EnvInfo, tmp_path: Path) -> None:
    (tmp_path / "weird.py").mkdir()
    assert "directory" in err("weird.py:f", env, tmp_path).message


def test_module_not_found_and_module_without_source(env: EnvInfo, tmp_path: Path) -> None:
    assert "no such module" in err("no_such_mod_xyz:f", env, tmp_path).message
    ext = importlib.machinery.EXTENSION_SUFFIXES[0]
    (tmp_path / f"compiled{ext}").write_bytes(b"\x7fELF")
    assert "no Python source" in err("compiled:f", env, tmp_path).message
    (tmp_path / "nspkg").mkdir()
    assert "namespace package" in err("nspkg", env, tmp_path).message
