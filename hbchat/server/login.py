"""
NICK: taking a nick, with a password when ``--auth`` asks for one, and the certificate's
identity with ``--tls-identity``.

A password's verdict may come later (a checker in a thread, a queue under --auth-checks):
meanwhile the connection holds what it reads (``connection.held``, handled in order once
the verdict is in) and does not read more.  Functions of the connection, for its verb table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.python.failure import Failure

from hbchat import wire
from hbchat.auth.authlimit import BACKOFF_DELAY_MAX, CheckerBusyError, address_key
from hbchat.closereasons import CloseReason
from hbchat.server.lifecycle import Phase

if TYPE_CHECKING:
    from hbchat.server.connection import ChatServerProtocol

#: Failed logins (ERR 401) one connection may have; the last one closes it.
MAX_AUTH_FAILURES = 3


def nick(connection: ChatServerProtocol, rest: bytes) -> None:
    """``NICK <nick> [<password>]``."""
    if connection.core.phase is Phase.REGISTERED:
        connection.sendLine(wire.ERR_ALREADY_REGISTERED)
        return
    arguments = rest.split(b" ")
    if len(arguments) > 2:
        connection.sendLine(wire.ERR_NICK_ARGUMENTS)
        return
    name = arguments[0]
    if not wire.is_valid_nick(name):
        connection.sendLine(wire.ERR_ERRONEOUS_NICKNAME)
        return
    factory = connection.factory
    refusal = factory.identityRefusal
    if refusal is not None or factory.checker is not None:
        wait = factory.loginFailures.refuse(address_key(connection.link.getPeer()))
        if wait > 0:
            _back_off(connection, wait)
            return
    why = None if refusal is None else refusal(connection.transport, name)
    if why is not None:
        _failed(connection, name, why)
        return
    checker = factory.checker
    if checker is None:
        answered(connection, factory.chat.register(connection, name), _registered)
        return
    if len(arguments) < 2 or not arguments[1]:
        _failed(connection, name, "no password")
        return
    # The verdict may come later: hold further input until it does.
    hold(connection)
    verdict = connection.passwordCheck = maybeDeferred(checker.requestAvatarId, UsernamePassword(name, arguments[1]))
    verdict.addCallbacks(_succeeded, _rejected, callbackArgs=(connection, name), errbackArgs=(connection, name))
    verdict.addErrback(lambda failure: connection.log.failure("handling a login verdict", failure))


def answered(
    connection: ChatServerProtocol, answer: Deferred[bool], then: Callable[[bool, ChatServerProtocol], None]
) -> bool:
    """
    Handle the chat's ``answer`` (to NICK or RESUME) with ``then``; True if it was in at once.

    A chat may answer later (one shared through a store, say): until it does, the connection
    holds what it reads, as during a password check, and handles it once the answer is in, so
    that the lines after a NICK are never taken for those of an unregistered connection.
    """
    if answer.called:
        answer.addCallback(then, connection)
        return True
    hold(connection)
    answer.addCallback(then, connection)
    answer.addErrback(
        lambda failure: connection.log.failure("the chat failed to answer {peer}", failure, peer=connection.peer)
    )
    answer.addBoth(lambda _: _release(connection))
    return False


def _back_off(connection: ChatServerProtocol, wait: float) -> None:
    """Too many failed logins from this address: ERR 503 and close, after a delay (hbchat.authlimit)."""
    connection.log.info("{peer} may not log in yet: too many failed logins from its address", peer=connection.peer)
    hold(connection)
    delay = min(wait, BACKOFF_DELAY_MAX, connection.factory.config.register_timeout / 2)
    connection.clock.callLater(delay, connection.closeWith, wire.ERR_LOGIN_BACKOFF, CloseReason.AUTH_BACKOFF)


def _succeeded(avatar_id: object, connection: ChatServerProtocol, name: bytes) -> None:
    connection.passwordCheck = None
    if connection.core.phase.ended:
        return
    if answered(connection, connection.factory.chat.register(connection, name), _registered):
        _release(connection)


def _registered(registered: bool, connection: ChatServerProtocol) -> None:
    if not registered:
        connection.sendLine(wire.ERR_NICK_IN_USE)


def _rejected(failure: Failure, connection: ChatServerProtocol, name: bytes) -> None:
    connection.passwordCheck = None
    if connection.core.phase.ended:
        return
    if failure.check(CheckerBusyError):
        connection.log.info("{peer} may not log in now: --auth-checks and --auth-queue are full", peer=connection.peer)
        connection.closeWith(wire.ERR_AUTH_BUSY, CloseReason.AUTH_BUSY)
    elif failure.check(UnauthorizedLogin):
        _failed(connection, name, "wrong password or unknown nick")
    else:
        connection.log.failure("checking the password of {nick} failed", failure, nick=name.decode())
        _failed(connection, name, "checker error")
    _release(connection)


def _failed(connection: ChatServerProtocol, name: bytes, why: str) -> None:
    connection.authFailures += 1
    connection.factory.events.loginFailed()
    connection.factory.loginFailures.failed(address_key(connection.link.getPeer()))
    connection.log.info(
        "{peer} failed to log in as {nick}: {why} ({count} of {limit})",
        peer=connection.peer,
        nick=name.decode(),
        why=why,
        count=connection.authFailures,
        limit=MAX_AUTH_FAILURES,
    )
    if connection.authFailures >= MAX_AUTH_FAILURES:
        connection.closeWith(wire.ERR_UNAUTHORIZED, CloseReason.UNAUTHORIZED)
    else:
        connection.sendLine(wire.ERR_UNAUTHORIZED)


def hold(connection: ChatServerProtocol) -> None:
    """A verdict is awaited (the connection is authenticating): hold what it reads, and read no more."""
    if connection.life.hold():
        connection.held = []
        connection.pauseReading()


def _release(connection: ChatServerProtocol) -> None:
    """The verdict is in: handle the held lines, in order, then read again."""
    held, connection.held = connection.held or [], None
    overflowed, connection.heldOverflow = connection.heldOverflow, False
    if not connection.life.release():
        return
    connection.handleLines(held, overflowed)
    if not connection.factory.backpressure.is_paused(connection):
        connection.resumeReading()
