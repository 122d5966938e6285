"""
``--redis URL``: the standard Redis URL forms, parsed and checked without touching the network.

- ``redis://[[user]:password@]host[:port][/db]``
- ``rediss://[[user]:password@]host[:port][/db][?ca=FILE]``: TLS, the server's certificate
  verified against ``FILE`` or, without it, the system's trust store
- ``unix:///path/redis.sock[?db=N]`` (a password as in ``unix://:password@/path``)

A password may come from the environment instead (``HBCHAT_REDIS_PASSWORD``), so that it
stays out of ``ps``; one in the URL wins.  User and password are percent-decoded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from hbchat.config import ConfigError

#: The environment variable a password may come from.
PASSWORD_VARIABLE = "HBCHAT_REDIS_PASSWORD"
DEFAULT_PORT = 6379
#: Redis has 16 databases unless configured otherwise; a bigger number is refused by SELECT.
_MAX_DB = 1 << 20


@dataclass(frozen=True)
class RedisURL:
    """Where Redis is and how to log in."""

    #: ``redis``, ``rediss`` (TLS) or ``unix``.
    scheme: str
    host: str = ""
    port: int = DEFAULT_PORT
    #: The socket's path (``unix`` only).
    path: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    #: PEM file of the CA that signs the server's certificate (``rediss`` only; None: the system store).
    ca: str | None = None

    @property
    def tls(self) -> bool:
        return self.scheme == "rediss"

    def describe(self) -> str:
        """The URL without its password, for log lines."""
        if self.scheme == "unix":
            where = f"unix://{self.path}"
        else:
            host = f"[{self.host}]" if ":" in self.host else self.host
            where = f"{self.scheme}://{host}:{self.port}"
        return where if self.db == 0 else f"{where} db {self.db}"


def _bad(text: str, why: str) -> ConfigError:
    return ConfigError(f"--redis {_hide_password(text)!r} is not a usable Redis URL: {why}")


def _hide_password(text: str) -> str:
    """The URL as given, with any password replaced, for error messages."""
    scheme, sep, rest = text.partition("://")
    if not sep or ("@" not in rest.split("/", 1)[0] and not rest.startswith(":")):
        return text
    credentials, at, tail = rest.rpartition("@")
    if not at:
        return text
    user, colon, _ = credentials.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{tail}"


def _db(text: str, value: str) -> int:
    if not (value.isascii() and value.isdigit()) or int(value) >= _MAX_DB:
        raise _bad(text, f"the database must be a number from 0, not {value!r}")
    return int(value)


def parse_redis_url(text: str, environ: Mapping[str, str] | None = None) -> RedisURL:
    """The parsed URL; :class:`ConfigError` naming ``--redis`` if it is not one of the forms."""
    environ = os.environ if environ is None else environ
    try:
        parts = urlsplit(text)
        port_text = parts.port
    except ValueError as error:
        raise _bad(text, str(error)) from None
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss", "unix"):
        raise _bad(text, "it must start with redis://, rediss:// or unix://")
    if parts.fragment:
        raise _bad(text, "a URL fragment (#...) means nothing here")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password == "":
        password = None
    if password is None and environ.get(PASSWORD_VARIABLE):
        password = environ[PASSWORD_VARIABLE]
    query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False)
    allowed = {"unix": {"db"}, "redis": set(), "rediss": {"ca"}}[scheme]
    options: dict[str, str] = {}
    for name, value in query:
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise _bad(text, f"unknown option {name!r} (options of {scheme}://: {known})")
        if name in options:
            raise _bad(text, f"option {name!r} given twice")
        options[name] = value
    if scheme == "unix":
        if parts.hostname:
            raise _bad(text, "a unix:// URL names a socket path (unix:///path/redis.sock), not a host")
        if not parts.path.startswith("/") or parts.path.endswith("/"):
            raise _bad(text, "a unix:// URL needs the socket's absolute path (unix:///path/redis.sock)")
        db = _db(text, options["db"]) if "db" in options else 0
        return RedisURL("unix", path=unquote(parts.path), db=db, username=username, password=password)
    host = parts.hostname
    if not host:
        raise _bad(text, "it names no host")
    port = DEFAULT_PORT if port_text is None else port_text
    if not 0 < port < 65536:
        raise _bad(text, f"port {port} is out of range")
    db_text = parts.path.lstrip("/")
    if "/" in db_text:
        raise _bad(text, "after the host comes at most /db, a database number")
    db = _db(text, db_text) if db_text else 0
    ca = options.get("ca")
    if ca is not None:
        if not ca:
            raise _bad(text, "?ca= names no file")
        if not os.path.isfile(ca):
            raise _bad(text, f"the CA file {ca!r} does not exist")
    return RedisURL(scheme, host=host, port=port, db=db, username=username, password=password, ca=ca)
