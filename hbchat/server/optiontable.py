"""
The table of ``twistd hbchat``'s flags and parameters: each one's name, default, help words
(what ``--help`` shows) and the parse that checks its value (hbchat.config).  Pure data, apart
from :mod:`hbchat.server.tap`, which adds the options that take more than a parse (``--listen``,
``--web``, ``--state``, ``--auth``, ...) and builds the service.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.python import usage

from hbchat.config import ConfigError, ServerConfig, parse_count, parse_rate, parse_seconds

DEFAULTS = ServerConfig()


def coerce_with(parse: Callable[[str, str], Any], option: str) -> Callable[[str], Any]:
    def coerce(text: str) -> Any:
        try:
            return parse(option, text)
        except ConfigError as error:
            raise usage.UsageError(str(error)) from None

    coerce.coerceDoc = ""  # type: ignore[attr-defined]
    return coerce


def plain(seconds: float) -> float:
    """Show whole-number defaults in --help as ``30``, not ``30.0``."""
    return int(seconds) if seconds == int(seconds) else seconds


#: twistd hbchat's flags: name, short name, help.
FLAGS: list[list[Any]] = [
    [
        "reuse-port",
        None,
        "tcp: and ssl: listeners (--listen and --web) set SO_REUSEPORT, so several hbchat processes on one host "
        "serve one port (the kernel spreads new connections among them; with --redis they are one chat, without it "
        "each process is a chat of its own). Not for unix: or systemd: listeners.",
    ],
    [
        "tls-identity",
        None,
        "With --tls-client-ca: NICK must be the common name of the client's certificate, exactly (letter case "
        "included), or it is ERR 401. Connections through non-TLS listeners have no certificate, so every NICK "
        "of theirs is ERR 401 (RESUME, with its token, still works).",
    ],
]


#: twistd hbchat's parameters: name, short name, default, help, and the parse that checks it.
PARAMETERS: list[list[Any]] = [
    [
        "ping",
        None,
        plain(DEFAULTS.ping),
        "Seconds between the server's PINGs to each client.",
        coerce_with(parse_seconds, "ping"),
    ],
    [
        "timeout",
        None,
        plain(DEFAULTS.timeout),
        "Seconds of silence after which a client is cut (must be greater than --ping).",
        coerce_with(parse_seconds, "timeout"),
    ],
    [
        "batch-window",
        None,
        plain(DEFAULTS.batch_window),
        "Seconds (at most 0.01) a busy server lets reads pile up between polls: after a reactor turn that read "
        "anything it polls again only this long after the previous poll, so that one wake-up serves every client "
        "that spoke meanwhile (a fifth of the heartbeat's CPU at 10,000 clients). The cost is at most this much "
        "latency while busy; an idle server reads at once. 0: poll at once.",
        coerce_with(lambda option, text: parse_seconds(option, text, allow_zero=True), "batch-window"),
    ],
    [
        "register-timeout",
        None,
        plain(DEFAULTS.register_timeout),
        "Seconds a new connection has to register with NICK.",
        coerce_with(parse_seconds, "register-timeout"),
    ],
    [
        "max-line",
        None,
        DEFAULTS.max_line,
        "Longest line accepted, in bytes without its line ending.",
        coerce_with(parse_count, "max-line"),
    ],
    [
        "max-clients",
        None,
        DEFAULTS.max_clients,
        "Most connections served at once; more are told ERR 503.",
        coerce_with(parse_count, "max-clients"),
    ],
    [
        "max-per-ip",
        None,
        DEFAULTS.max_per_ip,
        "Most connections from one IP address; more are told ERR 503 (loopback and UNIX sockets are exempt;"
        " an IPv4 client of a dual-stack listener, ::ffff:a.b.c.d, counts as a.b.c.d).",
        coerce_with(parse_count, "max-per-ip"),
    ],
    [
        "sendq-max",
        None,
        DEFAULTS.sendq_max,
        "A client whose unsent output, in the server's buffer and the kernel's send queue together, grows past "
        "this many bytes while it lags is cut (LEFT ... slow).",
        coerce_with(parse_count, "sendq-max"),
    ],
    [
        "sendq-soft",
        None,
        DEFAULTS.sendq_soft,
        "When a client's unsent output passes this many bytes, the server stops reading from it (and from the "
        "clients talking to it) until it drains. 4096 to 67108864, less than --sendq-max; it is also the most "
        "the server reads from a connection at once, and the most the kernel's send buffer holds for one.",
        coerce_with(parse_count, "sendq-soft"),
    ],
    [
        "rate",
        None,
        plain(DEFAULTS.rate),
        "Lines a second each connection may send on average (0: no limit); more are answered ERR 429, and a "
        "client that keeps going after 10 of them is cut (BYE kicked).",
        coerce_with(parse_rate, "rate"),
    ],
    [
        "burst",
        None,
        DEFAULTS.burst,
        "Lines a connection may send at once, above --rate, before ERR 429.",
        coerce_with(parse_count, "burst"),
    ],
    [
        "max-handshakes",
        None,
        DEFAULTS.max_handshakes,
        "Most connections between accept and registration (TLS handshake included) at once; further ones wait "
        "in the listen queue, and once the oldest unregistered one has had its grace (twice the 90th percentile "
        "of recent registration times, 0.25 s to --register-timeout x --max-handshakes / 2048 s), each one "
        "accepted closes it "
        "(ERR 503 too many connections registering; never one whose password is being checked).",
        coerce_with(parse_count, "max-handshakes"),
    ],
    [
        "history",
        None,
        DEFAULTS.history,
        "Events (MSG, JOIN, LEFT) kept for clients that resume.",
        coerce_with(parse_count, "history"),
    ],
    [
        "grace",
        None,
        plain(DEFAULTS.grace),
        "Seconds a dropped client's session stays resumable (its nick reserved).",
        coerce_with(parse_seconds, "grace"),
    ],
    [
        "max-grace",
        None,
        DEFAULTS.max_grace,
        "Most sessions in grace at once; at the bound the oldest one ends early (its nick is freed).",
        coerce_with(parse_count, "max-grace"),
    ],
    [
        "max-grace-per-ip",
        None,
        DEFAULTS.max_grace_per_ip,
        "Most sessions in grace from one IP address; at the bound that address's oldest one ends early "
        "(loopback and UNIX sockets are exempt).",
        coerce_with(parse_count, "max-grace-per-ip"),
    ],
    [
        "auth-checks",
        None,
        DEFAULTS.auth_checks,
        "With --auth: password checks run at once, each in a thread (an hbpasswd check takes 16 MiB and tens of "
        "milliseconds of CPU); no more than the cores the server may use.",
        coerce_with(parse_count, "auth-checks"),
    ],
    [
        "auth-queue",
        None,
        DEFAULTS.auth_queue,
        "With --auth: password checks that may wait for --auth-checks; a NICK beyond them is answered "
        "ERR 503 busy checking passwords, try again later, and closed.",
        coerce_with(parse_count, "auth-queue"),
    ],
    [
        "auth-failures",
        None,
        DEFAULTS.auth_failures,
        "With --auth or --tls-identity: failed logins one IP address (loopback included) may have at once, "
        "refilled at this many a minute; beyond, its NICK is answered ERR 503 too many failed logins from your "
        "address, try again later (after up to 5 seconds), and closed, unchecked.",
        coerce_with(parse_count, "auth-failures"),
    ],
    [
        "retry-hint",
        None,
        plain(DEFAULTS.retry_hint),
        "On shutdown, clients are told to reconnect within this many seconds (BYE shutdown retry=S).",
        coerce_with(parse_seconds, "retry-hint"),
    ],
    [
        "drain",
        None,
        plain(DEFAULTS.drain),
        "On SIGTERM, say BYE to the clients in batches spread over this many seconds (0: all at once); "
        "a second SIGTERM or SIGINT closes everything at once.",
        coerce_with(lambda option, text: parse_seconds(option, text, allow_zero=True), "drain"),
    ],
]
