"""How a command ends: a user's error as one line and exit code 2, a signal as one line and
128 + its number (after every lock and worker is released), a bug as a traceback."""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from pipeline.errors import UserError

P = ParamSpec("P")
R = TypeVar("R")


def fail(message: str) -> typer.Exit:
    """Print ``message`` as one error line on stderr; the exit (code 2) to raise."""
    # One unwrapped line: a message is grepped for in logs as often as it is read.
    Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(2)


class Terminated(BaseException):
    """SIGTERM, raised in the main thread as Python raises KeyboardInterrupt for SIGINT, so
    that every ``finally`` and ``with`` (locks, Dask clients, temporary files) unwinds."""


_received: list[int] = []


def _on_signal(signum: int, frame: object) -> None:
    _received.append(signum)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


@contextlib.contextmanager
def _signals_caught() -> Iterator[None]:
    """SIGINT and SIGTERM handled by :func:`_on_signal` while a command runs (main thread
    only: Python delivers signals there)."""
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Run ``command``; a :class:`~pipeline.errors.UserError` (bad option, config, dataset,
    store, checkpoint, device, weights) becomes its message on stderr and exit code 2. SIGINT
    and SIGTERM stop it with one line and exit code 130 or 143, after its locks and workers
    are released (whatever the interrupted code raised while unwinding, such as Dask's
    ``CancelledError``, is not shown). Anything else is a bug and surfaces as a traceback
    (exit code 1)."""
    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            with _signals_caught():
                return command(*args, **kwargs)
        except UserError as err:
            raise fail(str(err)) from None
        except (typer.Exit, SystemExit):
            raise
        except BaseException as err:
            signum = _received[0] if _received else (
                signal.SIGINT if isinstance(err, KeyboardInterrupt) else None)
            if signum is None:
                raise
            Console(stderr=True).print(f"interrupted ({signal.Signals(signum).name}); run the "
                                       "same command to resume", soft_wrap=True)
            raise typer.Exit(128 + signum) from None
    return wrapper
