"""Exit codes of the launcher `<name>-run` (documented in docs/launcher.md; keep in step).

A scheduler's retry rule must be able to tell *why* a task ended from the code alone, so the
launcher reserves a block (81-87) that ordinary programs rarely use; a whole script's or
`--exec` command's own exit code is passed through unchanged, and a signal death is 128+N.
The launcher sh template repeats 83/84/85 because it must report before Python exists.
"""

OK = 0
FUNCTION_ERROR = 81  # the target function raised (scripts keep Python's own exit code 1)
LIMIT = 82  # a resource limit fired (memory, wall time, disk) or the kernel OOM killer struck
INFRASTRUCTURE = 83  # bad archive/checksum, unusable cache, unpack or relocation failed
PREFLIGHT = 84  # this node cannot run the pack (CPU architecture, glibc, Python ABI)
USAGE = 85  # bad launcher command line
MONITOR = 86  # the monitor itself failed (a bug): the task's outcome is unknown
OUTPUT = 87  # the return value or report cannot be written (--output/--report place, disk full)
SIGNAL_BASE = 128  # killed by signal N (from outside): 128 + N

TABLE = {
    OK: "success",
    FUNCTION_ERROR: "the target function raised an exception",
    LIMIT: "a resource limit was exceeded (memory, wall time, disk) or the kernel OOM killer",
    INFRASTRUCTURE: "infrastructure failure: archive, checksum, cache or unpack",
    PREFLIGHT: "preflight failed: this node cannot run the pack",
    USAGE: "bad launcher command line",
    MONITOR: "internal error of the monitor",
    OUTPUT: "the return value or the report could not be written where asked",
}
