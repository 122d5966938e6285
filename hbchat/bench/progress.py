"""The parent's progress display: a bar on a terminal, a status line every few seconds anywhere else."""

from __future__ import annotations

import os
import time
from typing import TextIO

from hbchat.bench.stats import fit, progress_bar

STATUS_EVERY = 5.0


class Progress:
    """A progress bar on a terminal; a status line every few seconds anywhere else."""

    def __init__(self, stream: TextIO, tty: bool | None = None, width: int | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.width = width or _terminal_width(stream)
        self.phase = ""
        self._last_draw = 0.0
        self._drawn = False

    def update(self, phase: str, fraction: float, text: str) -> None:
        now = time.monotonic()
        changed = phase != self.phase
        self.phase = phase
        line = f"{progress_bar(fraction)} {phase}: {text}"
        if self.tty:
            if changed or now - self._last_draw >= 0.1:
                self.stream.write("\r" + fit(line, self.width - 1).ljust(min(len(line), self.width - 1)) + "\x1b[K")
                self.stream.flush()
                self._last_draw = now
                self._drawn = True
        elif changed or now - self._last_draw >= STATUS_EVERY:
            self.stream.write(f"[{time.strftime('%H:%M:%S')}] {phase}: {text}\n")
            self.stream.flush()
            self._last_draw = now

    def message(self, text: str) -> None:
        self.clear()
        self.stream.write(text + "\n")
        self.stream.flush()

    def clear(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False


def _terminal_width(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 100
