"""Progress output: a live tqdm bar on a terminal, one plain line every so often elsewhere.

Redirected to a log file or run by a batch system, a tqdm bar writes a carriage-return update
many times a second, which reads as thousands of half-lines. Off a terminal this writes one
complete line (``desc: n/total unit (pct), rate, postfix``) at most every :data:`LINE_EVERY_S`
seconds, and one when it closes.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

#: Seconds between two progress lines when the output is not a terminal.
LINE_EVERY_S = 30.0


class LineProgress:
    """tqdm's ``update`` / ``set_postfix`` / ``close`` / ``n``, printed as periodic single lines."""

    def __init__(self, total: int, initial: int = 0, desc: str = "", unit: str = "it", file: TextIO | None = None,
                 every_s: float = LINE_EVERY_S) -> None:
        self.total, self.n, self.desc, self.unit = total, initial, desc, unit
        self.file = file if file is not None else sys.stderr
        self.every_s, self.postfix = every_s, ""
        self._start_n, self._t0 = initial, time.monotonic()
        self._last = self._t0
        self._closed = False

    def set_postfix(self, **kw: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in kw.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self._line(now)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._line(time.monotonic())

    def _line(self, now: float) -> None:
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        dt = now - self._t0
        rate = f", {(self.n - self._start_n) / dt:.1f} {self.unit}/s" if dt > 0 else ""
        post = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n}/{self.total} {self.unit}{pct}{rate}{post}", file=self.file, flush=True)


def progress_bar(total: int, initial: int = 0, desc: str = "", unit: str = "it") -> Any:
    """A tqdm bar when stderr is a terminal, else a :class:`LineProgress`."""
    stream = sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=False)
    return LineProgress(total, initial, desc, unit, file=stream)
