"""Exit codes, and the one place that turns an exception into one line on stderr.

    0  ok
    1  a bug in fedsim: one line asking to report it (FEDSIM_DEBUG=1 adds the traceback)
    2  bad input: a scenario file, a flag, a path, an endpoint, a run directory in use
    3  the run failed or diverged (an error class may set `exit_code = 3`)
  130  interrupted (Ctrl-C)

Expected failures never print a traceback; only a real bug does, and only when asked.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable

EXIT_OK = 0
EXIT_BUG = 1
EXIT_BAD_INPUT = 2
EXIT_RUN_FAILED = 3
EXIT_INTERRUPTED = 130

DEBUG_ENV = "FEDSIM_DEBUG"

# OS errors that mean the user named a path that is not there or not usable: bad input.
_PATH_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def _say(line: str) -> None:
    try:
        print(" ".join(line.split()), file=sys.stderr)  # one line, whatever the message holds
    except (BrokenPipeError, ValueError):
        pass


def _quiet_stdout() -> None:
    """After a closed pipe (`fedsim list | head -3`), point stdout at /dev/null so the
    interpreter's final flush does not complain."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError):
        pass  # stdout is not a real file (captured in tests): nothing will flush to a pipe


def raise_broken_pipe() -> None:
    """For rich's Console.on_broken_pipe, which would exit 1: let `guarded` exit quietly."""
    raise BrokenPipeError


def handle(exc: BaseException) -> int:
    """The exit code for `exc`, after saying what went wrong in one line."""
    from fedsim.errors import FedsimError

    wire_error = getattr(sys.modules.get("fedsim.codecs.wire"), "WireError", None)
    zmq_error = getattr(sys.modules.get("zmq"), "ZMQError", None)

    if isinstance(exc, KeyboardInterrupt):
        _say("interrupted")
        return EXIT_INTERRUPTED
    if isinstance(exc, BrokenPipeError):
        _quiet_stdout()
        return EXIT_OK  # the reader has what it wanted
    if isinstance(exc, SystemExit):
        code = exc.code
        return code if isinstance(code, int) else EXIT_BAD_INPUT
    if isinstance(exc, FedsimError):
        _say(f"error: {exc}")
        return int(getattr(exc, "exit_code", EXIT_BAD_INPUT))
    if wire_error is not None and isinstance(exc, wire_error):
        _say(f"error: malformed message: {exc}")
        return EXIT_BAD_INPUT
    if zmq_error is not None and isinstance(exc, zmq_error):
        _say(f"error: ZeroMQ: {exc}")
        return EXIT_BAD_INPUT
    if isinstance(exc, _PATH_ERRORS):
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        _say(f"error: {where}{exc.strerror or exc}")
        return EXIT_BAD_INPUT
    if isinstance(exc, MemoryError):
        _say("error: out of memory (fedsim validate estimates what a scenario needs)")
        return EXIT_RUN_FAILED
    if isinstance(exc, OSError) and exc.strerror:  # disk full, too many open files, ...
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        _say(f"error: {where}{exc.strerror}")
        return EXIT_RUN_FAILED
    if os.environ.get(DEBUG_ENV):
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    _say(
        f"internal error: {type(exc).__name__}: {exc} -- this is a bug in fedsim; please "
        f"report it with the command line and the scenario file (run with {DEBUG_ENV}=1 "
        "for the traceback)"
    )
    return EXIT_BUG


def guarded(fn: Callable[[], int]) -> int:
    """Run a command; whatever it raises becomes one line and an exit code."""
    try:
        code = int(fn() or 0)
        sys.stdout.flush()  # a closed pipe shows up here, not in the interpreter's exit
        return code
    except BaseException as exc:  # noqa: BLE001 -- the one place every error is reported
        return handle(exc)
