"""Ctrl-C and SIGTERM while a sweep runs: the first stops it the way Tune stops on Ctrl-C (the
experiment state is saved, running trials are stopped, and ``Tuner.fit`` returns), the second
stops at once. Either way the sweep is recorded as interrupted and can be resumed.

Tune stops gracefully on SIGINT and on SIGUSR1 only; on SIGTERM (what SLURM and Kubernetes send
on pre-emption) Ray's driver handler exits at once. While :meth:`Interruptions.handled` is
active both signals come here. Tune's own SIGINT handler is turned off
(``TUNE_DISABLE_SIGINT_HANDLER``) for the duration of :meth:`Interruptions.tuning`, so that this
module sees the signal first and asks Tune to stop through the SIGUSR1 handler Tune installs for
the same purpose.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from study.vocabulary import DEFAULT_STORAGE

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
TUNE_STOP_SIGNAL = signal.SIGUSR1
"""Tune's "stop the experiment after saving its state" signal (``ray.tune.tune``)."""
TUNE_SIGINT_ENV = "TUNE_DISABLE_SIGINT_HANDLER"
EXIT_CODES = {signal.SIGINT.name: 128 + signal.SIGINT, signal.SIGTERM.name: 128 + signal.SIGTERM}
"""The shell's exit status for a process ended by each signal."""


class Interruptions:
    """Which stop signal a sweep's driver received first (``received``: its name, or None)."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._tuning = False

    @contextmanager
    def handled(self) -> Iterator[Interruptions]:
        """SIGINT and SIGTERM come to :meth:`_on_signal` (in the main thread; elsewhere signals
        cannot be handled and are left as they are)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}
        for number in STOP_SIGNALS:
            signal.signal(number, self._on_signal)
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    @contextmanager
    def tuning(self) -> Iterator[None]:
        """While ``Tuner.fit`` runs: a first signal asks Tune to stop gracefully."""
        saved = os.environ.get(TUNE_SIGINT_ENV)
        os.environ[TUNE_SIGINT_ENV] = "1"
        self._tuning = True
        try:
            yield
        finally:
            self._tuning = False
            if saved is None:
                os.environ.pop(TUNE_SIGINT_ENV, None)
            else:
                os.environ[TUNE_SIGINT_ENV] = saved

    def _on_signal(self, number: int, frame: FrameType | None) -> None:
        name = signal.Signals(number).name
        if self.received is not None:
            logger.warning("%s again: stopping at once", name)
            raise KeyboardInterrupt
        self.received = name
        stop_tune = signal.getsignal(TUNE_STOP_SIGNAL)
        if self._tuning and callable(stop_tune):
            logger.warning(
                "%s: stopping the sweep; Tune saves its state first (Ctrl-C again to stop at once)",
                name,
            )
            stop_tune(TUNE_STOP_SIGNAL, frame)
            return
        raise KeyboardInterrupt


class SweepInterrupted(KeyboardInterrupt):
    """A sweep stopped by SIGINT or SIGTERM (``signal``), recorded as interrupted: nothing written
    is lost and :meth:`resume_command` finishes it. ``ended`` trials of the ``planned`` had ended
    (None: MLflow did not say)."""

    def __init__(
        self,
        name: str,
        signal: str | None,
        ended: int | None,
        planned: int,
        storage: str,
        address: str | None,
    ) -> None:
        super().__init__(name)
        self.name, self.signal, self.ended, self.planned = name, signal, ended, planned
        self.storage, self.address = storage, address

    @property
    def exit_code(self) -> int:
        """The shell's status for a process ended by the signal (130 for SIGINT)."""
        return EXIT_CODES.get(self.signal or signal.SIGINT.name, EXIT_CODES[signal.SIGINT.name])

    def resume_command(self) -> str:
        options = "" if self.storage == DEFAULT_STORAGE else f" --storage {self.storage}"
        options += f" --address {self.address}" if self.address else ""
        return f"study resume {self.name}{options}"
