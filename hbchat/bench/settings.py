"""
What a run of ``hbchat-bench`` is asked to do, and whether that is allowed: pure checks.

The one rule with a reason beyond sanity: **loopback only**.  ``hbchat-bench`` is a load
tool for your own test server; pointed at someone else's it would be a denial-of-service
tool.  A TCP endpoint's host is resolved once, every address it resolves to must be in
127.0.0.0/8 or be ::1, and the workers connect to that resolved address (so a name cannot
resolve differently later).  UNIX sockets are local by nature and always allowed.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

from hbchat.bench.stats import MIN_TEXT_SIZE

#: The longest chat text a default server accepts: ``--max-line`` 4096 minus ``SAY ``.
MAX_TEXT_SIZE = 4096 - len(b"SAY ")
MAX_CONNECTIONS = 200_000
MAX_WORKERS = 64

Resolver = Callable[[str, int], list[str]]


class UsageError(Exception):
    """A request the tool refuses; its text is one line for the user."""


@dataclass(frozen=True)
class Endpoint:
    """Where the server listens: a resolved loopback address and port, or a UNIX socket path."""

    kind: str  # "tcp" or "unix"
    address: str = ""
    port: int = 0
    path: str = ""
    #: What the user wrote, for reports.
    text: str = ""

    def describe(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if ":" in self.address:
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"


def _split_escaped(text: str) -> list[str]:
    """Split on ``:`` except where escaped with a backslash, as Twisted endpoint strings do."""
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _port(text: str, endpoint: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise UsageError(f"bad port {text!r} in endpoint {endpoint!r}") from None
    if not 0 < port < 65536:
        raise UsageError(f"port {port} out of range in endpoint {endpoint!r}")
    return port


def _options(rest: str, names: tuple[str, ...], endpoint: str) -> dict[str, str]:
    """Positional and ``key=value`` parts of an endpoint string, as keywords named ``names``."""
    positional: list[str] = []
    keywords: dict[str, str] = {}
    for part in _split_escaped(rest):
        key, equals, value = part.partition("=")
        if equals:
            if key not in (*names, "timeout"):
                raise UsageError(f"endpoint {endpoint!r}: unknown option {key!r}")
            keywords[key] = value
        else:
            positional.append(part)
    for name in names:
        if name not in keywords and positional:
            keywords[name] = positional.pop(0)
    if positional:
        raise UsageError(f"endpoint {endpoint!r}: unexpected {positional[0]!r}")
    return keywords


def parse_endpoint(text: str) -> tuple[str, str, int]:
    """
    ``(kind, host or path, port)`` from an endpoint string, without resolving anything.

    Accepted: ``tcp:HOST:PORT``, ``tcp:host=HOST:port=PORT`` (colons in an IPv6 host escaped
    with ``\\``, as in Twisted's endpoint strings), ``tcp:[::1]:PORT``, plain ``HOST:PORT`` or
    ``[::1]:PORT``, ``unix:PATH`` and ``unix:path=PATH``.
    """
    scheme, _, rest = text.partition(":")
    if scheme == "unix":
        path = _options(rest, ("path",), text).get("path", "")
        if not path:
            raise UsageError(f"no path in endpoint {text!r}")
        return "unix", path, 0
    if scheme != "tcp":
        if text.startswith("[") or (rest.isdigit() and scheme):
            rest = text  # HOST:PORT or [ADDRESS]:PORT
        else:
            raise UsageError(f"endpoint {text!r}: only tcp:HOST:PORT and unix:PATH endpoints are supported")
    if rest.startswith("["):
        host, bracket, after = rest[1:].partition("]")
        if not bracket or not after.startswith(":") or not host:
            raise UsageError(f"bad endpoint {text!r}: expected tcp:[ADDRESS]:PORT")
        return "tcp", host, _port(after[1:], text)
    options = _options(rest, ("host", "port"), text)
    if not options.get("host") or not options.get("port"):
        raise UsageError(f"bad endpoint {text!r}: expected tcp:HOST:PORT or unix:PATH")
    return "tcp", options["host"], _port(options["port"], text)


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise UsageError(f"cannot resolve {host!r}: {error.strerror or error}") from None
    return [str(info[4][0]) for info in infos]


def is_loopback(address: str) -> bool:
    """127.0.0.0/8 or ::1, and nothing else."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return ip.is_loopback


def loopback_endpoint(text: str, resolve: Resolver = system_resolver) -> Endpoint:
    """The endpoint, resolved; :class:`UsageError` unless every address is loopback."""
    kind, where, port = parse_endpoint(text)
    if kind == "unix":
        return Endpoint("unix", path=where, text=text)
    addresses = resolve(where, port)
    if not addresses:
        raise UsageError(f"{where!r} resolves to no address")
    outside = [address for address in addresses if not is_loopback(address)]
    if outside:
        which = outside[0] if outside[0] == where else f"{where} resolves to {outside[0]}, which"
        raise UsageError(
            f"refusing {text}: {which} is not a loopback address; hbchat-bench is a load tool "
            "for your own test server and only connects to 127.0.0.0/8, ::1 or a unix: socket"
        )
    # Prefer IPv4 when a name (localhost) has both: that is where servers listen by default.
    address = sorted(addresses, key=lambda a: ":" in a)[0]
    return Endpoint("tcp", address=address, port=port, text=text)


@dataclass
class RunSettings:
    """Everything a run of ``idle`` or ``fanout`` needs; sent to every worker (picklable)."""

    scenario: str
    endpoint: Endpoint
    workers: int = 2
    clients: int = 0
    receivers: int = 0
    senders: int = 0
    #: Aggregate messages per second over all senders; ``None``: flat out.
    rate: float | None = None
    size: int = 64
    period: float = 1.0
    duration: float = 10.0
    warmup: float = 1.0
    grace: float = 2.0
    drain: float = 10.0
    settle: float = 1.0
    settle_max: float = 60.0
    ramp: float = 2000.0
    ramp_concurrency: int = 256
    connect_timeout: float = 30.0
    max_time: float = 300.0
    nick_prefix: str = "bench"
    run_tag: str = "0000"
    json_path: str | None = None
    plot_path: str | None = None
    server_pid: int | None = None
    #: A run the server rate-limited (ERR 429, BYE kicked) still succeeds (--allow-rate-limit).
    allow_rate_limit: bool = False

    @property
    def connections(self) -> int:
        return self.clients if self.scenario == "idle" else self.receivers + self.senders

    def planned_seconds(self) -> float:
        """A lower bound on the run's length: connecting, settling, the window, the tail."""
        connect = self.connections / self.ramp
        tail = self.grace if self.scenario == "idle" else self.warmup
        return connect + self.settle + self.duration + tail


def validate(settings: RunSettings) -> None:
    """Raise :class:`UsageError` with the first problem found."""
    s = settings

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise UsageError(message)

    need(1 <= s.workers <= MAX_WORKERS, f"--workers must be between 1 and {MAX_WORKERS}")
    if s.scenario == "idle":
        need(1 <= s.clients <= MAX_CONNECTIONS, f"--clients must be between 1 and {MAX_CONNECTIONS}")
        need(0.05 <= s.period <= 3600, "--period must be between 0.05 and 3600 seconds")
    elif s.scenario == "fanout":
        need(s.receivers >= 1, "--receivers must be at least 1")
        need(s.senders >= 1, "--senders must be at least 1")
        need(s.receivers + s.senders <= MAX_CONNECTIONS, f"at most {MAX_CONNECTIONS} connections in all")
        need(s.rate is None or 0 < s.rate <= 10_000_000, "--rate must be positive (or use --flat)")
        need(
            MIN_TEXT_SIZE <= s.size <= MAX_TEXT_SIZE,
            f"--size must be between {MIN_TEXT_SIZE} (the timestamp stamp) and {MAX_TEXT_SIZE} bytes",
        )
        need(0 <= s.warmup <= 600, "--warmup must be between 0 and 600 seconds")
        need(0 <= s.drain <= 600, "--drain must be between 0 and 600 seconds")
    else:
        raise UsageError(f"unknown scenario {s.scenario!r}")
    need(0 < s.duration <= 86400, "--duration must be positive")
    need(0 <= s.grace <= 600, "--grace must be between 0 and 600 seconds")
    need(0 < s.ramp <= 1_000_000, "--ramp must be positive")
    need(0 < s.max_time <= 86400, "--max-time must be positive (at most a day)")
    need(0 <= s.settle <= s.settle_max, "--settle must not be negative")
    need(
        s.nick_prefix != "" and len(s.nick_prefix) <= 12 and s.nick_prefix.replace("-", "").replace("_", "").isalnum(),
        "--nick-prefix must be 1 to 12 letters, digits, - or _",
    )
    planned = s.planned_seconds()
    need(
        planned < s.max_time,
        f"this run needs at least {planned:.0f}s (connecting at --ramp, settling, --duration) "
        f"but --max-time is {s.max_time:g}s",
    )


def effective_workers(requested: int, connections: int) -> int:
    """No more workers than connections."""
    return max(1, min(requested, connections))


def default_workers() -> int:
    """min(4, CPUs): enough that the tool is not the bottleneck on small loads."""
    return max(1, min(4, os.cpu_count() or 1))
