"""A Python client for warm mode (`<name>-run --serve`): one server, many measured calls.

Why a helper: the protocol is simple (JSON lines), but every engine integration (Dask, Parsl,
notebooks) would otherwise re-implement the same details — waiting for the `ready` line,
matching results to calls by id when `--slots` runs several at once, draining stdout so the
server never blocks, shutting down by EOF. Results come back with their full per-call report.

    with WarmServer("dist/simulate-run", memory="2G") as srv:
        print(srv.call(42, steps=10))            # the value; the function's own exception
                                                 # (also a WarmCallError), or WarmCallError
        res = srv.call_result(1, limits={"wall_time": 5})   # CallResult with .report
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any


@dataclass(frozen=True)
class CallResult:
    """One call's outcome as the server reported it (`report` is the lfm-pack.report/1 dict)."""

    id: str
    status: str
    exit_code: int
    value: Any = None
    error: Mapping[str, Any] | None = None
    report: Mapping[str, Any] | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class WarmServerError(RuntimeError):
    """The server could not start (import failed, bad options) or went away."""


class WarmCallError(RuntimeError):
    """A call did not succeed (exception, limit, signal); `.result` has the details.

    When the function raised (exit 81) and its exception type is importable here, `call()`
    raises an instance of a class deriving from that type *and* WarmCallError (see
    lfm_pack/remote.py): `except ValueError:` and `except WarmCallError:` both catch it.
    """

    def __init__(self, result: CallResult) -> None:
        err = result.error or {}
        super().__init__(
            "call {} {} (exit {}): {}: {}".format(
                result.id, result.status, result.exit_code, err.get("type"), err.get("message")
            )
        )
        self.result = result

    def __reduce__(self) -> tuple[Any, ...]:
        return (call_error, (self.result,))


def call_error(result: CallResult) -> WarmCallError:
    """The exception for a failed call: the function's own type when it raised and that type
    is importable here (also a WarmCallError), else a plain WarmCallError."""
    from lfm_pack.remote import rebuild

    if result.exit_code == 81 and result.error:

        def init(exc: BaseException) -> None:
            exc.__dict__["result"] = result

        rebuilt = rebuild(result.error, WarmCallError, init)
        if isinstance(rebuilt, WarmCallError):
            return rebuilt
    return WarmCallError(result)


def _decode(msg: Mapping[str, Any]) -> Any:
    """A result line's value with its own type (typed JSON, or an inline pickle)."""
    from lfm_pack.api import decode_value
    from lfm_pack.launch.runtime.lfm_runtime.result import UndecodedValue, decode_typed

    if isinstance(msg.get("value_pickle"), str):
        return decode_value(base64.b64decode(msg["value_pickle"]))
    try:
        return decode_typed(msg.get("value"))
    except Exception as exc:  # a newer tag, or a broken payload
        return UndecodedValue("value", f"{type(exc).__name__}: {exc}")


class WarmServer:
    """Start `<launcher> --serve` and talk to it; a context manager (EOF on exit)."""

    def __init__(
        self,
        launcher: str | os.PathLike[str],
        *,
        target: str | None = None,
        slots: int = 1,
        memory: int | str | None = None,
        wall_time: float | None = None,
        cores: int | None = None,
        disk: int | str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        archive: str | os.PathLike[str] | None = None,
        report_dir: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        stderr: IO[Any] | int | None = None,
        startup_timeout: float = 600.0,
        sh: str | None = None,
    ) -> None:
        argv = [sh or shutil.which("sh") or "/bin/sh", os.fspath(launcher)]
        opts: list[tuple[str, Any]] = [
            ("--archive", archive),
            ("--cache-dir", cache_dir),
            ("--target", target),
            ("--memory", memory),
            ("--wall-time", wall_time),
            ("--cores", cores),
            ("--disk", disk),
            ("--report-dir", report_dir),
        ]
        for name, value in opts:
            if value is not None:
                argv += [name, os.fspath(value) if isinstance(value, Path) else str(value)]
        # typed values: the client gets tuples, sets, datetimes, arrays... back as themselves
        argv += ["--slots", str(slots), "--output-format", "typed", *extra_args, "--serve"]
        self.argv = argv
        self.env = dict(env) if env is not None else None
        self.stderr = stderr
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready: dict[str, Any] = {}
        self.stopped: dict[str, Any] | None = None
        self._results: dict[str, CallResult] = {}
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._closed = False
        self._reader: threading.Thread | None = None

    # ---- lifecycle ------------------------------------------------------------------
    def start(self) -> WarmServer:
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=self.env,
        )
        self._reader = threading.Thread(target=self._read, name="lfm-warm-reader", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + self.startup_timeout
        with self._cond:
            while not self.ready and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.kill()
                    raise WarmServerError("the warm server did not become ready in time")
                self._cond.wait(left)
        if not self.ready:
            code = self.proc.wait()
            detail = self.stopped or {}
            err = detail.get("error") or {}
            raise WarmServerError(
                "the warm server exited with {} before it was ready{}".format(
                    code, ": " + str(err.get("message")) if err else ""
                )
            )
        return self

    def __enter__(self) -> WarmServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self, timeout: float = 60.0) -> int:
        """EOF on stdin: running calls finish, the server reports and exits; its exit code."""
        proc = self._require()
        with self._write_lock:
            if proc.stdin is not None and not proc.stdin.closed:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            code = proc.wait()
        if self._reader is not None:
            self._reader.join(5)
        return code

    def terminate(self) -> None:
        """SIGTERM: running calls are ended and reported, queued calls answered `signal`."""
        self._require().terminate()

    def kill(self) -> None:
        self._require().kill()

    def _require(self) -> subprocess.Popen[bytes]:
        if self.proc is None:
            raise WarmServerError("the warm server is not started (use it as a context manager)")
        return self.proc

    # ---- the reader thread ----------------------------------------------------------
    def _read(self) -> None:
        proc = self._require()
        assert proc.stdout is not None
        for raw in proc.stdout:
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            with self._cond:
                event = msg.get("event")
                if event == "ready":
                    self.ready = msg
                elif event in ("stopped", "failed"):
                    self.stopped = msg
                elif event == "result":
                    res = CallResult(
                        id=str(msg.get("id")),
                        status=str(msg.get("status")),
                        exit_code=int(msg.get("exit_code") or 0),
                        value=_decode(msg) if msg.get("status") == "ok" else None,
                        error=msg.get("error"),
                        report=msg.get("report"),
                    )
                    self._results[res.id] = res
                self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # ---- calls ----------------------------------------------------------------------
    def submit(
        self,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        limits: Mapping[str, Any] | None = None,
    ) -> str:
        """Send one call without waiting; returns its id (for `result`)."""
        proc = self._require()
        call_id = f"c{next(self._ids)}"
        req: dict[str, Any] = {"id": call_id, "args": list(args), "kwargs": dict(kwargs or {})}
        if limits:
            req["limits"] = dict(limits)
        line = (json.dumps(req) + "\n").encode()
        with self._write_lock:
            if proc.stdin is None or proc.stdin.closed:
                raise WarmServerError("the warm server is closed")
            try:
                proc.stdin.write(line)
                proc.stdin.flush()
            except BrokenPipeError:
                raise WarmServerError("the warm server went away") from None
        return call_id

    def result(self, call_id: str, timeout: float | None = None) -> CallResult:
        """Wait for the result of `call_id`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while call_id not in self._results:
                if self._closed:
                    raise WarmServerError(f"the warm server ended before answering call {call_id}")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"no result for call {call_id}")
                self._cond.wait(left)
            return self._results.pop(call_id)

    def call_result(
        self, *args: Any, limits: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> CallResult:
        """Run one call and return its CallResult (never raises for the call's own failure)."""
        return self.result(self.submit(args, kwargs, limits=limits))

    def call(self, *args: Any, **kwargs: Any) -> Any:
        """Run one call; its return value, or WarmCallError for an exception/limit/signal."""
        res = self.result(self.submit(args, kwargs))
        if not res.ok:
            raise call_error(res)
        return res.value

    def map(
        self, calls: Iterable[Sequence[Any] | tuple[Sequence[Any], Mapping[str, Any]]]
    ) -> list[CallResult]:
        """Pipeline many calls (`[args, ...]` or `[(args, kwargs), ...]`); results in order."""
        ids: list[str] = []
        for item in calls:
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], Mapping):
                ids.append(self.submit(item[0], item[1]))
            else:
                ids.append(self.submit(item))
        return [self.result(i) for i in ids]
