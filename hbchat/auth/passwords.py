"""
Password files of salted, slow hashes, and the checker that reads them (``hbchat-passwd``,
in :mod:`hbchat.passwdcli`, manages them).

One line per user::

    <nick>:scrypt$<n>$<r>$<p>$<salt, base64>$<hash, base64>

The hash is :func:`hashlib.scrypt` of the UTF-8 password; the cost parameters are stored
with each line, so raising them later only affects new or changed passwords.  The file is
read on every check, so ``hbchat-passwd`` changes take effect without a restart.  Hashing
runs in a thread (scrypt is slow on purpose and must not stall the reactor), and secrets are
compared with :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from zope.interface import implementer

from hbchat.lognames import NamedLogger

#: scrypt cost: 2**14 x 8 takes 16 MiB and some tens of milliseconds per check.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
_MAXMEM = 64 * 1024 * 1024


class PasswordFileError(ValueError):
    """The password file cannot be read or has a malformed line; the message says where."""


class PasswordFileUnusable(UnauthorizedLogin):
    """A login refused because the password file could not be read (logged in one line)."""


def exposed_mode(path: str) -> int | None:
    """The mode of ``path`` if others may read or write it (0644, 0666), else None."""
    mode = file_mode(path)
    return mode if mode is not None and mode & 0o006 else None


@dataclass(frozen=True)
class Hashed:
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    def encode(self) -> str:
        salt = base64.b64encode(self.salt).decode("ascii")
        digest = base64.b64encode(self.digest).decode("ascii")
        return f"scrypt${self.n}${self.r}${self.p}${salt}${digest}"

    def matches(self, password: bytes) -> bool:
        candidate = _scrypt(password, self.salt, self.n, self.r, self.p, len(self.digest))
        return hmac.compare_digest(candidate, self.digest)


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=length)


def hash_password(password: str | bytes, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> Hashed:
    secret = password.encode("utf-8") if isinstance(password, str) else password
    salt = secrets.token_bytes(SALT_BYTES)
    return Hashed(n, r, p, salt, _scrypt(secret, salt, n, r, p, HASH_BYTES))


def parse_hash(text: str) -> Hashed:
    parts = text.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError("not an scrypt$n$r$p$salt$hash entry")
    n, r, p = (int(part) for part in parts[1:4])
    if n < 2 or n & (n - 1) or r < 1 or p < 1:
        raise ValueError("bad scrypt parameters")
    salt = base64.b64decode(parts[4], validate=True)
    digest = base64.b64decode(parts[5], validate=True)
    if not salt or not digest:
        raise ValueError("empty salt or hash")
    return Hashed(n, r, p, salt, digest)


def read_entries(path: str) -> dict[str, Hashed]:
    """Nick to hash, in file order; blank lines and ``#`` comments are skipped."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as error:
        raise PasswordFileError(f"{path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise PasswordFileError(f"{path}: not UTF-8 text") from None
    entries: dict[str, Hashed] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        nick, sep, encoded = line.partition(":")
        try:
            if not sep:
                raise ValueError("no ':'")
            entries[nick] = parse_hash(encoded)
        except ValueError as error:
            raise PasswordFileError(f"{path}, line {number}: malformed entry ({error})") from None
    return entries


def file_mode(path: str) -> int | None:
    """The permission bits of ``path``; None if it does not exist."""
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        return None


def write_entries(path: str, entries: dict[str, Hashed]) -> None:
    """
    Replace the file atomically (a temporary file in the same directory, then a rename).

    A new file gets mode 0600; an existing one keeps its mode, less any permission for
    others: hashes are not for everyone to read (0644 becomes 0640).
    """
    directory = os.path.dirname(os.path.abspath(path))
    existing = file_mode(path)
    mode = 0o600 if existing is None else existing & ~0o007
    handle, temporary = tempfile.mkstemp(prefix=".hbpasswd-", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as output:
            for nick, hashed in entries.items():
                output.write(f"{nick}:{hashed.encode()}\n")
            output.flush()
            os.fsync(output.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise


@implementer(ICredentialsChecker)
class HashedPasswordChecker:
    """
    An ``ICredentialsChecker`` for :class:`IUsernamePassword` against an hbpasswd file.

    ``run`` calls the (slow) verification; by default in a thread.  An unknown user costs a
    hash as well, so that timing does not tell which nicks exist.
    """

    credentialInterfaces = (IUsernamePassword,)

    log = NamedLogger("hbchat.passwords.HashedPasswordChecker")

    def __init__(self, path: str, run: Callable[..., Deferred[bool]] | None = None) -> None:
        self.path = path
        self._run = run if run is not None else deferToThread
        #: Dummy entries by cost, for unknown nicks (dict operations are atomic: threads share it).
        self._dummies: dict[tuple[int, int, int, int], Hashed] = {}

    def dummyFor(self, entries: dict[str, Hashed]) -> Hashed:
        """
        An entry no password matches, of the cost most entries have (the default cost for
        an empty file): checking an unknown nick takes as long as checking a known one.
        """
        costs = Counter((hashed.n, hashed.r, hashed.p, len(hashed.digest)) for hashed in entries.values())
        cost = costs.most_common(1)[0][0] if costs else (SCRYPT_N, SCRYPT_R, SCRYPT_P, HASH_BYTES)
        dummy = self._dummies.get(cost)
        if dummy is None:
            n, r, p, length = cost
            dummy = Hashed(n, r, p, secrets.token_bytes(SALT_BYTES), secrets.token_bytes(length))
            self._dummies[cost] = dummy
        return dummy

    def _verify(self, nick: str, password: bytes) -> bool:
        entries = read_entries(self.path)
        hashed = entries.get(nick)
        if hashed is None:
            self.dummyFor(entries).matches(password)
            return False
        return hashed.matches(password)

    def requestAvatarId(self, credentials: IUsernamePassword) -> Deferred[bytes | tuple[()]]:
        username = credentials.username
        name = username.decode("utf-8", "replace") if isinstance(username, bytes) else str(username)
        password = credentials.password
        secret = password if isinstance(password, bytes) else str(password).encode("utf-8")

        def verdict(ok: bool) -> bytes | tuple[()]:
            if not ok:
                raise UnauthorizedLogin("invalid nick or password")
            return name.encode("utf-8")

        def unreadable(failure: Failure) -> bytes | tuple[()]:
            failure.trap(PasswordFileError)
            # One line, not a traceback: the file was removed, made unreadable or broken.
            self.log.error("password file unusable, login of {nick} refused: {why}", nick=name, why=str(failure.value))
            raise PasswordFileUnusable(str(failure.value))

        result: Deferred[bool] = maybeDeferred(self._run, self._verify, name, secret)
        return result.addCallbacks(verdict, unreadable)
