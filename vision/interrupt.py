"""Ctrl-C (and SIGTERM) as a request: training loops checkpoint at their next safe point, then stop.

A bare ``KeyboardInterrupt`` lands wherever Python happens to be, possibly between a backward
pass and an optimiser step, so the state on disk is whatever the last periodic checkpoint held.
Inside :class:`GracefulInterrupt` the first SIGINT or SIGTERM only sets ``requested``; the loop
(vision training after its current step, agent training at its next rollout boundary) writes a
checkpoint and raises ``KeyboardInterrupt`` itself, so the CLI exits with code 130 and the same
command resumes from that exact point. A second signal interrupts at once, as usual.

SIGTERM is handled the same way because cluster schedulers (Slurm, Kubernetes, Ray's
``ray.cancel``) send it before they kill. Handlers can only be installed from the main thread;
elsewhere the context manager does nothing and the periodic checkpoints remain.

Shared by :mod:`vision.train` and :mod:`agents.train`; it lives in the lower layer.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulInterrupt:
    """``with GracefulInterrupt("vision") as stop: ... if stop.requested: save(); raise KeyboardInterrupt``."""

    def __init__(self, what: str, safe_point: str = "after the current step") -> None:
        self.what, self.safe_point = what, safe_point
        self.requested = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # the second signal: stop now
            raise KeyboardInterrupt
        self.requested = True
        name = signal.Signals(signum).name
        print(
            f"\ndarla: {name} received; {self.what} saves a checkpoint {self.safe_point} and stops "
            "(send it again to stop at once)",
            file=sys.stderr, flush=True,
        )

    def __enter__(self) -> GracefulInterrupt:
        self.requested = False
        if threading.current_thread() is threading.main_thread():
            for s in _SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def stop(self) -> None:
        """Raise the ``KeyboardInterrupt`` the first signal deferred (call after checkpointing)."""
        raise KeyboardInterrupt(f"{self.what} interrupted; checkpoint saved")
