"""
The check at start, before the reactor runs: is Redis there (within a bounded wait), is it
7 or later, and is the cluster's key set, if any, of our layout?  Any "no" is one line on
stderr and exit status 1 (:mod:`hbchat.server.tap`).

It runs before twistd starts the reactor, so it is a few blocking socket calls: the RESP
commands are written by hand (three of them), their replies read by hiredis's parser.
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any

import hiredis

from hbchat.cluster.keys import LAYOUT, Keys
from hbchat.cluster.url import RedisURL

#: Redis 7 brought functions (FUNCTION LOAD, FCALL) and XADD with an explicit <ms>-* ID.
MINIMUM_MAJOR = 7


class ProbeError(Exception):
    """Why this node cannot join; the message is the whole story, for one stderr line."""


def _command(*arguments: bytes) -> bytes:
    parts = [b"*%d\r\n" % len(arguments)]
    for argument in arguments:
        parts.append(b"$%d\r\n%s\r\n" % (len(argument), argument))
    return b"".join(parts)


def _open(url: RedisURL, timeout: float) -> socket.socket:
    if url.scheme == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(url.path)
        return sock
    sock = socket.create_connection((url.host, url.port), timeout=timeout)
    if url.tls:
        context = ssl.create_default_context(cafile=url.ca)
        return context.wrap_socket(sock, server_hostname=url.host)
    return sock


def _ask(sock: socket.socket, reader: Any, *arguments: bytes) -> Any:
    sock.sendall(_command(*arguments))
    while True:
        reply = reader.gets()
        if reply is not False:
            if isinstance(reply, hiredis.ReplyError):
                raise ProbeError(f"Redis refused {arguments[0].decode()}: {reply}")
            return reply
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("Redis closed the connection")
        reader.feed(data)


def _once(url: RedisURL, keys: Keys, timeout: float) -> str:
    with _open(url, timeout) as sock:
        reader = hiredis.Reader()
        if url.password is not None:
            login = [url.username.encode()] if url.username else []
            _ask(sock, reader, b"AUTH", *login, url.password.encode())
        if url.db:
            _ask(sock, reader, b"SELECT", b"%d" % url.db)
        info = _ask(sock, reader, b"INFO", b"server")
        version = ""
        for line in info.decode(errors="replace").splitlines():
            if line.startswith("redis_version:"):
                version = line.split(":", 1)[1].strip()
        major = version.split(".", 1)[0]
        if not major.isdigit() or int(major) < MINIMUM_MAJOR:
            raise ProbeError(f"Redis at {url.describe()} is version {version or 'unknown'}; --redis needs 7 or later")
        kind = _ask(sock, reader, b"TYPE", keys.meta)
        layout = _ask(sock, reader, b"HGET", keys.meta, b"layout") if kind == b"hash" else None
        if kind != b"none" and layout != LAYOUT:
            found = (
                layout.decode(errors="replace") if layout is not None else f"a {kind.decode()} at {keys.meta.decode()}"
            )
            raise ProbeError(
                f"the keys of --cluster-name {keys.name} at {url.describe()} have another layout ({found}); "
                f"this hbchat uses {LAYOUT.decode()}: choose another --cluster-name"
            )
        return version


def probe(url: RedisURL, keys: Keys, wait: float, clock: Any = time) -> str:
    """Redis's version once it answers; :class:`ProbeError` if it does not within ``wait`` seconds, or will not do."""
    deadline = clock.monotonic() + wait
    while True:
        try:
            return _once(url, keys, min(2.0, max(0.1, wait)))
        except ProbeError:
            raise
        except (OSError, ConnectionError, ssl.SSLError) as error:
            if clock.monotonic() >= deadline:
                raise ProbeError(f"Redis at {url.describe()} is unreachable after {wait:g}s: {error}") from None
            clock.sleep(0.25)
