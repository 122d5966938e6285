"""What one storm scenario records while it runs: attempts, their outcomes, returns and losses."""

from __future__ import annotations

from dataclasses import dataclass, field

from hbchat.bench.stormclock import now


@dataclass
class Recorder:
    """Everything one scenario measures; times after ``t0`` (the stop signal) are relative."""

    t0: float | None = None
    initial: set[str] = field(default_factory=set)
    #: Start of every attempt after t0, with its outcome (True: TCP connected) and how long
    #: the connect took, once known.
    attempts: list[float] = field(default_factory=list)
    outcomes: list[bool | None] = field(default_factory=list)
    latencies: list[float | None] = field(default_factory=list)
    back: dict[str, float] = field(default_factory=dict)
    gave_up: dict[str, str] = field(default_factory=dict)
    #: When each client noticed its connection was gone.
    losses: list[float] = field(default_factory=list)
    #: When connections that never got to WELCOME, and lasted STALLED seconds or more, ended.
    stalled: list[float] = field(default_factory=list)

    def attempt(self) -> int | None:
        """An attempt starts; returns its index, or None before the stop."""
        if self.t0 is None:
            return None
        self.attempts.append(now() - self.t0)
        self.outcomes.append(None)
        self.latencies.append(None)
        return len(self.attempts) - 1

    def attempt_ended(self, index: int | None, ok: bool) -> None:
        if index is None:
            return
        self.outcomes[index] = ok
        self.latencies[index] = now() - self.t0 - self.attempts[index]  # type: ignore[operator]

    def registered(self, nick: str) -> None:
        if self.t0 is None:
            self.initial.add(nick)
        elif nick not in self.back:
            self.back[nick] = now() - self.t0
