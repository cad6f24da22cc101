"""SIGTERM / Ctrl-C for a whole run: stop at a safe point, say where, exit 75.

Outside training a signal raises StopRequested at once: loading data, tokenizing, loading a
model and evaluating write nothing that a resume does not redo. Inside a deferring section
(the training loop) it only sets a flag, and the loop saves a checkpoint at its next step
boundary before it stops. A second signal means the user will not wait: the previous
handlers come back and KeyboardInterrupt stops the run at once.

Kept free of heavy imports so the handler is in place before torch is imported.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Any, Iterator

from finetune.errors import StopRequested

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """The process's SIGTERM/SIGINT handler while a run (or a bare training loop) is in progress."""

    def __init__(self) -> None:
        self.raised: str | None = None  # the signal's name once one arrived
        self.phase = "setup"  # where the run is, for the message: setup, pretraining, evaluation, ...
        self.note = ""  # what is safe already, e.g. "the fine-tuned model is saved in runs/x/model"
        self._defer = 0
        self._old: dict[int, Any] = {}
        self._outer: StopSignals | None = None

    def __enter__(self) -> "StopSignals":
        global _active
        for sig in SIGNALS:
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals to whoever owns it
                pass
        self._outer, _active = _active, self
        return self

    def __exit__(self, *exc: Any) -> None:
        global _active
        self._restore()
        _active = self._outer

    def _handle(self, signum: int, frame: Any) -> None:
        if self.raised:
            self._restore()
            raise KeyboardInterrupt(f"signal {signum} received twice")
        self.raised = signal.Signals(signum).name
        if not self._defer:
            raise self.request()

    def _restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}

    def request(self) -> StopRequested:
        """The StopRequested that says which signal stopped the run, where, and what is already safe."""
        what = f"{self.raised or 'a stop request'} during {self.phase}"
        return StopRequested(f"{what}; {self.note}" if self.note else what)

    def check(self) -> None:
        """A safe point: stop here if a signal arrived while stopping was deferred (or its exception was swallowed)."""
        if self.raised:
            raise self.request()

    @contextlib.contextmanager
    def deferred(self) -> Iterator["StopSignals"]:
        """Signals only set the flag inside this block; the code in it checks ``raised`` at its safe points."""
        self._defer += 1
        try:
            yield self
        finally:
            self._defer -= 1


_active: StopSignals | None = None


def active() -> StopSignals | None:
    """The handler of the run in progress in this process, if any."""
    return _active


def caused_by_stop(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while handling a stop request (a library wrapped our StopRequested in its own error)."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        if isinstance(link, StopRequested):
            return True
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    return False
