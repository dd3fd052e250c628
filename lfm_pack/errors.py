"""One error base class with an exit code and a hint; the CLI turns it into one red line.

Findings (things worth knowing that do not stop the run) are data (`models.Finding`), never
exceptions. Every exit code below is documented in docs/exit-codes.md; keep the two in step.
"""

from __future__ import annotations


class ExitCode:
    """Exit codes of the `lfm-pack` command (the launcher has its own table, see launch/)."""

    OK = 0
    INTERNAL = 1  # a bug in lfm-pack: the only case that may print a traceback (with --debug)
    USAGE = 2  # bad command line (click's own code)
    TARGET = 3  # target file/function missing, syntax error, undecodable source
    ENVIRONMENT = 4  # --python/--prefix is not a usable Python environment
    METADATA = 5  # corrupt dist-info / RECORD / conda-meta in the target environment
    PACK = 6  # packing failed (I/O, conda-pack, interpreter relocation)
    VERIFY = 7  # the pack did not run from a hidden-prefix extraction, or leaks the build path
    REFUSED = 8  # the environment holds something that cannot be relocated (override flag exists)
    INPUT = 9  # a lock file, report or other input file is unreadable or of the wrong schema


class LfmError(Exception):
    """Base of every error a user can cause; carries an exit code and a one-line hint."""

    exit_code: int = ExitCode.INTERNAL

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(LfmError):
    """The command line asks for something contradictory or impossible (exit 2, like click)."""

    exit_code = ExitCode.USAGE


class TargetError(LfmError):
    """The target (file, module, function) cannot be found, read or parsed."""

    exit_code = ExitCode.TARGET


class EnvironmentProbeError(LfmError):
    """The target environment is not a Python environment lfm-pack can probe."""

    exit_code = ExitCode.ENVIRONMENT


class MetadataError(LfmError):
    """Installed metadata (dist-info, RECORD, conda-meta) is unreadable."""

    exit_code = ExitCode.METADATA


class PackError(LfmError):
    """Building the pack failed."""

    exit_code = ExitCode.PACK


class VerifyError(LfmError):
    """The pack failed its hidden-prefix verification."""

    exit_code = ExitCode.VERIFY


class RefusedError(LfmError):
    """The environment holds something lfm-pack refuses to pack without an override flag."""

    exit_code = ExitCode.REFUSED


class InputFileError(LfmError):
    """An input file (lock, report) is unreadable or has the wrong schema."""

    exit_code = ExitCode.INPUT
