"""
``--auth CHECKER``: the checker a description names, with hbchat's own checks first.

Twisted's ``file:`` checker only warns about a missing file (and the server then refuses
every login), and takes an hbpasswd file as plain ``nick:password`` lines, which makes the
stored hash itself the password.  Both are refused here, with one line that says what to do.
"""

from __future__ import annotations

import os

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.strcred import InvalidAuthType, makeChecker
from twisted.logger import Logger

from hbchat.auth.passwords import exposed_mode

log = Logger(namespace="hbchat.authoption")

#: The ``--auth`` text of ``twistd hbchat --help`` (one line: usage.Options shows it as written).
AUTH_HELP = (
    "Require a password with NICK, checked by CHECKER: hbpasswd:FILE (salted scrypt hashes made with "
    "hbchat-passwd; use this one), file:FILE (plain-text nick:password lines, for trying things out), "
    "memory:nick:password:... or unix (system accounts); FILE must exist. Given once; --help-auth lists "
    "the checkers [default: off, anyone may take any free nick]"
)


class AuthError(ValueError):
    """An ``--auth`` description the server cannot start with; the message is one line."""


def _looks_like_hbpasswd(path: str) -> bool:
    """True if some ``nick:password`` line of ``path`` holds an hbpasswd hash as its password."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            _, sep, secret = line.strip().partition(":")
            if sep and secret.startswith("scrypt$") and secret.count("$") == 5:
                return True
    return False


def _check_file_argument(kind: str, path: str) -> None:
    if not path.strip():
        raise AuthError(f"--auth {kind}: needs a file: --auth {kind}:FILE")
    if not os.path.exists(path):
        raise AuthError(f"--auth {kind}:{path}: no such file")
    if not os.path.isfile(path):
        raise AuthError(f"--auth {kind}:{path}: not a regular file")
    try:
        hashes = _looks_like_hbpasswd(path)
    except OSError as error:
        raise AuthError(f"--auth {kind}:{path}: {error.strerror}") from None
    mode = exposed_mode(path)
    if mode is not None:
        log.warn(
            "--auth {kind}:{path} may be read by other users (mode {mode}): chmod o-rwx {path}",
            kind=kind,
            path=path,
            mode=f"{mode:04o}",
        )
    if kind == "file" and hashes:
        raise AuthError(f"--auth file:{path} holds hbpasswd hashes (made by hbchat-passwd): use --auth hbpasswd:{path}")


def make_checker(description: str) -> ICredentialsChecker:
    """
    The checker for an ``--auth`` description, or :class:`AuthError` with one line saying why not:
    an unknown kind, a missing file, or an hbpasswd file given to ``file:``.
    """
    kind, _, argument = description.partition(":")
    if kind in ("file", "hbpasswd"):
        _check_file_argument(kind, argument)
    try:
        checker: ICredentialsChecker = makeChecker(description)
    except InvalidAuthType:
        raise AuthError(f"--auth {kind!r} is not a known checker (see twistd hbchat --help-auth)") from None
    except Exception as error:
        raise AuthError(f"--auth {description}: {error}") from None
    if IUsernamePassword not in checker.credentialInterfaces:
        raise AuthError(f"--auth {kind} does not check a nick and password (see twistd hbchat --help-auth)")
    return checker
