"""
The cluster's keys in Redis and the records of its log, as pure functions (docs/cluster.md).

Every key of a cluster starts with ``{NAME}:``, its name in braces: a Redis Cluster hash tag,
so all of them live in one slot and one script may touch them all.

==========================  ======  =========================================================
key                         type    holds
==========================  ======  =========================================================
``{N}:meta``                hash    ``layout`` (this module's :data:`LAYOUT`), ``epoch``
                                    (made when the key set is made: a new one means Redis lost
                                    its data), ``seq`` (the latest event's number)
``{N}:log``                 stream  the events, entry ID ``<seq>-0``; control records
                                    (``<seq>-<n>``, n > 0) for one node; trimmed to --history
``{N}:nodes``               zset    live node incarnations, scored by lease deadline (ms, Redis
                                    clock)
``{N}:node:<incarnation>``  set     tokens of the sessions attached on that node
``{N}:s:<token>``           hash    a session: ``nick``, ``key`` (nick_key), ``node`` and
                                    ``att`` (its connection; empty in grace), ``g`` (grace, ms);
                                    in grace it expires after ``g``
``{N}:n:<nick key>``        string  the token holding the nick (expires with its session)
``{N}:present``             hash    nick key -> nick of every attached user (WHO)
``{N}:grace``               zset    tokens of the sessions in grace, by when it ends (--max-grace)
==========================  ======  =========================================================

A log entry's fields: ``k`` (kind), then ``n`` (a nick) and ``t`` (text or LEFT word) for
events (``M`` MSG, ``J`` JOIN, ``L`` LEFT); control records name a connection by ``a`` (its
attachment ID, unique across the cluster): ``R`` (its session was taken over: ``BYE
replaced``) and ``P`` (a PRIV for it, from ``n``, text ``t``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hbchat import wire
from hbchat.config import ConfigError

#: The key layout this code reads and writes; a cluster made with another one is refused.
LAYOUT = b"hbchat-cluster-1"

_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def check_cluster_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"--cluster-name must be 1 to 64 letters, digits, '_', '.' or '-', not {name!r}",
        )
    return name


def check_node_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ConfigError(f"--node-name must be 1 to 64 letters, digits, '_', '.' or '-', not {name!r}")
    return name


@dataclass(frozen=True)
class Keys:
    """The key names of one cluster."""

    name: str

    @property
    def prefix(self) -> bytes:
        return b"{" + self.name.encode() + b"}:"

    @property
    def meta(self) -> bytes:
        return self.prefix + b"meta"

    @property
    def log(self) -> bytes:
        return self.prefix + b"log"

    @property
    def nodes(self) -> bytes:
        return self.prefix + b"nodes"

    @property
    def present(self) -> bytes:
        return self.prefix + b"present"

    def node(self, incarnation: bytes) -> bytes:
        return self.prefix + b"node:" + incarnation

    def session(self, token: bytes) -> bytes:
        return self.prefix + b"s:" + token

    def nick(self, nick: bytes) -> bytes:
        return self.prefix + b"n:" + wire.nick_key(nick)


@dataclass(frozen=True)
class Event:
    """An event of the chat's log: its number and its line, as every client receives it."""

    seq: int
    line: bytes
    #: ``M``, ``J`` or ``L``, and whose it is.
    kind: bytes = b""
    nick: bytes = b""


@dataclass(frozen=True)
class Control:
    """A record of the log for the node holding connection ``attachment``."""

    kind: bytes
    attachment: bytes
    nick: bytes = b""
    text: bytes = b""


class BadRecordError(ValueError):
    """A log entry this layout does not describe."""


def parse_id(entry_id: bytes) -> tuple[int, int]:
    """A stream entry ID, ``<ms>-<seq>``, as two numbers."""
    high, dash, low = entry_id.partition(b"-")
    if not dash or not high.isdigit() or not low.isdigit():
        raise BadRecordError(f"not a stream entry ID: {entry_id!r}")
    return int(high), int(low)


def _fields(flat: list[bytes]) -> dict[bytes, bytes]:
    if len(flat) % 2:
        raise BadRecordError("a log entry's fields come in pairs")
    return dict(zip(flat[::2], flat[1::2], strict=True))


def decode(entry_id: bytes, flat: list[bytes]) -> Event | Control:
    """One log entry: an :class:`Event` with its wire line, or a :class:`Control` record."""
    seq, sub = parse_id(entry_id)
    fields = _fields(flat)
    kind = fields.get(b"k", b"")
    nick = fields.get(b"n", b"")
    text = fields.get(b"t", b"")
    if sub == 0:
        if kind == b"M":
            return Event(seq, wire.msg(seq, nick, text), kind, nick)
        if kind == b"J":
            return Event(seq, wire.join(seq, nick), kind, nick)
        if kind == b"L":
            return Event(seq, wire.left(seq, nick, text.decode("ascii", "replace")), kind, nick)
        raise BadRecordError(f"event {seq} has unknown kind {kind!r}")
    if kind in (b"R", b"P") and fields.get(b"a"):
        return Control(kind, fields[b"a"], nick, text)
    raise BadRecordError(f"control record {entry_id!r} has unknown kind {kind!r}")


def events_in(entries: list[tuple[bytes, list[bytes]]]) -> list[Event]:
    """The events of a range of log entries (control records left out), oldest first."""
    found = []
    for entry_id, flat in entries:
        record = decode(entry_id, flat)
        if isinstance(record, Event):
            found.append(record)
    return found


def replay(events: list[Event], last_seq: int, upto: int) -> tuple[list[bytes], bool]:
    """
    What a RESUME after ``last_seq`` is replayed, when the chat is at ``upto``: the lines of
    ``events`` numbered above ``last_seq`` and up to ``upto``, and whether they are all of
    them (no event missing: trimmed away, or lost with Redis's data).
    """
    lines = [event.line for event in events if last_seq < event.seq <= upto]
    seqs = [event.seq for event in events if last_seq < event.seq <= upto]
    complete = seqs == list(range(last_seq + 1, upto + 1))
    return lines, complete
