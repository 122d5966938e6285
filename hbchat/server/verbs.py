"""
The verbs a connection understands, each a function of the connection and the bytes after
the verb and its space (``PING``, ``PONG``, ``NICK``, ``RESUME``, ``SAY``, ``TELL``, ``WHO``,
``QUIT``); :data:`COMMANDS` is the table the connection dispatches through.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from hbchat import wire
from hbchat.closereasons import CloseReason
from hbchat.server import login
from hbchat.server.lifecycle import Phase

if TYPE_CHECKING:
    from hbchat.server.connection import ChatServerProtocol


def ping(connection: ChatServerProtocol, rest: bytes) -> None:
    connection.answerPing(b" " + rest if rest else b"")


def pong(connection: ChatServerProtocol, rest: bytes) -> None:
    connection.pongsReceived += 1
    connection.pongReceived(rest)


#: Larger <last-seq>s are read as this (every seq is below it).
LAST_SEQ_BOUND = 2**63 - 1


def resume(connection: ChatServerProtocol, rest: bytes) -> None:
    if connection.core.phase is Phase.REGISTERED:
        connection.sendLine(wire.ERR_ALREADY_REGISTERED)
        return
    arguments = rest.split(b" ")
    chat = connection.factory.chat
    # Any number of digits.  The chat judges a number beyond its latest event (the in-memory
    # one replays nothing, as for the latest; one kept in Redis answers ERR 404).
    last_seq = wire.decimal_at_most(arguments[-1], LAST_SEQ_BOUND)
    if len(arguments) != 2 or not arguments[0] or last_seq is None:
        connection.sendLine(wire.ERR_RESUME_ARGUMENTS)
        return
    login.answered(connection, chat.resume(connection, arguments[0], last_seq), _resumed)


def _resumed(resumed: bool, connection: ChatServerProtocol) -> None:
    if not resumed:
        connection.sendLine(wire.ERR_UNKNOWN_SESSION)


def say(connection: ChatServerProtocol, rest: bytes) -> None:
    if not rest:
        connection.sendLine(wire.ERR_EMPTY_MESSAGE)
        return
    connection.factory.chat.say(connection, rest)
    connection.factory.backpressure.spoke(connection)


def tell(connection: ChatServerProtocol, rest: bytes) -> None:
    target_nick, _, text = rest.partition(b" ")
    if not text:
        connection.sendLine(wire.ERR_EMPTY_MESSAGE)
        return
    if not connection.factory.chat.tell(connection, target_nick, text):
        connection.sendLine(wire.ERR_NO_SUCH_NICK)


def who(connection: ChatServerProtocol, rest: bytes) -> None:
    connection.sendLine(connection.factory.chat.who())


def quit(connection: ChatServerProtocol, rest: bytes) -> None:
    if connection.nick is not None:
        connection.log.info("{nick} quit ({peer})", nick=connection.nick.decode(), peer=connection.peer)
    connection.closeWith(wire.bye("quit"), CloseReason.QUIT)


#: Every verb, by its upper-case bytes.
COMMANDS: dict[bytes, Callable[[ChatServerProtocol, bytes], None]] = {
    b"PING": ping,
    b"PONG": pong,
    b"NICK": login.nick,
    b"RESUME": resume,
    b"SAY": say,
    b"TELL": tell,
    b"WHO": who,
    b"QUIT": quit,
}
