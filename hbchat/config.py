"""
Server settings and the validation of their values.

Kept apart from the twistd options so that the rules (what a valid interval is, that the
idle timeout must outlast the ping interval) are plain functions, testable without Twisted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal


class ConfigError(ValueError):
    """A setting has a value the server cannot run with; the message names the option."""


def _parse_number(option: str, text: str, unit: str, zero: str | None) -> float:
    """A positive finite number of ``unit``; with ``zero`` (how --help calls it), zero too."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ConfigError(f"--{option} must be a number of {unit}, not {text!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and zero is None):
        kind = "a positive" if zero is None else f"{zero} or a positive"
        raise ConfigError(f"--{option} must be {kind} number of {unit}, not {text!r}")
    return value


def parse_seconds(option: str, text: str, allow_zero: bool = False) -> float:
    """A positive (or, with ``allow_zero``, non-negative) finite number of seconds, e.g. ``30`` or ``0.5``."""
    return _parse_number(option, text, "seconds", "zero" if allow_zero else None)


def parse_rate(option: str, text: str) -> float:
    """Zero (off) or a positive finite number of lines per second."""
    return _parse_number(option, text, "lines per second", "zero (off)")


def parse_count(option: str, text: str) -> int:
    """A positive whole number."""
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise ConfigError(f"--{option} must be a whole number, not {text!r}") from None
    if value <= 0:
        raise ConfigError(f"--{option} must be a positive whole number, not {text!r}")
    return value


#: Listen backlog for endpoints that do not name one.  Twisted's default, 50, overflows in
#: a reconnect storm: the kernel then completes handshakes with SYN cookies that the server
#: never accepts, and those clients wait for a HELLO that never comes.
LISTEN_BACKLOG = 1024
_BACKLOG_ENDPOINTS = frozenset({"tcp", "tcp6", "ssl", "unix"})


def with_listen_backlog(description: str, backlog: int = LISTEN_BACKLOG) -> str:
    """An endpoint description with ``backlog=`` added, unless it has one or takes none."""
    kind = description.split(":", 1)[0].strip().lower()
    if kind in _BACKLOG_ENDPOINTS and "backlog=" not in description:
        return f"{description}:backlog={backlog}"
    return description


#: Bounds of --sendq-soft.  Twisted's stream transports use one number both as the
#: high-water mark of their output and as the size of each read, so it must be neither
#: tiny (a read per few bytes) nor huge (a buffer that size per read).
SENDQ_SOFT_MIN = 4096
SENDQ_SOFT_MAX = 64 * 1024 * 1024

#: Lines a second per connection, and at once, unless --rate and --burst say otherwise.
#: Part of the protocol: a HELLO without ``rate=`` means these.
DEFAULT_RATE = 100.0
DEFAULT_BURST = 200

#: The longest --batch-window: a pause the size of a PONG's whole latency budget is no batching.
BATCH_WINDOW_MAX = 0.01


@dataclass(frozen=True)
class ServerConfig:
    """Everything the chat factory needs to know; defaults are the documented ones."""

    ping: float = 30.0
    timeout: float = 90.0
    register_timeout: float = 10.0
    max_line: int = 4096
    max_clients: int = 10000
    history: int = 1000
    grace: float = 120.0
    retry_hint: float = 10.0
    drain: float = 5.0
    max_per_ip: int = 50
    sendq_max: int = 4 * 1024 * 1024
    sendq_soft: int = 256 * 1024
    #: Lines a second per connection (0: no limit) and how many may come at once.
    rate: float = DEFAULT_RATE
    burst: int = DEFAULT_BURST
    #: Connections between accept and registration (TLS handshake included) at once.
    max_handshakes: int = 500
    #: --auth-checks, --auth-queue: password checks running at once, and waiting (hbchat.authlimit).
    auth_checks: int = 2
    auth_queue: int = 200
    #: --auth-failures: failed logins per address per minute (at once at most) before it must wait.
    auth_failures: int = 10
    #: --max-grace, --max-grace-per-ip: sessions in grace in all, and per address (hbchat.sessions).
    max_grace: int = 10000
    max_grace_per_ip: int = 50
    listen: tuple[str, ...] = field(default=("tcp:6464",))
    #: --tls-client-ca: clients of ssl: listeners must present a certificate this CA signed.
    tls_client_ca: str | None = None
    #: --tls-identity: a NICK must be the common name of the client's certificate.
    tls_identity: bool = False
    #: --batch-window: after a turn that read something, wait until this long after the
    #: previous poll before polling again (hbchat.server.pacing; 0: poll at once).
    batch_window: float = 0.001

    def __post_init__(self) -> None:
        if self.tls_identity and self.tls_client_ca is None:
            raise ConfigError("--tls-identity needs --tls-client-ca (the CA that vouches for the names)")
        if self.timeout <= self.ping:
            raise ConfigError(
                f"--timeout ({format_number(self.timeout)}) must be greater than --ping ({format_number(self.ping)})"
            )
        if not SENDQ_SOFT_MIN <= self.sendq_soft <= SENDQ_SOFT_MAX:
            raise ConfigError(
                f"--sendq-soft must be {SENDQ_SOFT_MIN} to {SENDQ_SOFT_MAX} bytes, not {self.sendq_soft} "
                "(the server also reads up to that many bytes at a time)"
            )
        if not 0.0 <= self.batch_window <= BATCH_WINDOW_MAX:
            raise ConfigError(
                f"--batch-window must be 0 to {format_number(BATCH_WINDOW_MAX)} seconds,"
                f" not {format_number(self.batch_window)}"
            )
        if self.sendq_soft >= self.sendq_max:
            raise ConfigError(f"--sendq-soft ({self.sendq_soft}) must be less than --sendq-max ({self.sendq_max})")


def format_number(value: float) -> str:
    """The shortest plain decimal for a number: ``30``, ``0.5``, ``2.25``; never an exponent."""
    text = format(Decimal(repr(float(value))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text
