"""The storm's clock (the reactor's), its bounded sleeps, its progress lines on stderr, and its error."""

from __future__ import annotations

import sys
import time

from twisted.internet import defer, reactor, task


class BenchmarkError(Exception):
    """Something the benchmark needs did not happen in time."""


def now() -> float:
    return float(reactor.seconds())


def sleep(seconds: float) -> defer.Deferred[None]:
    return task.deferLater(reactor, seconds)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
