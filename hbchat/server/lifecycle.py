"""
A server connection's life as an automat machine: which events are legal when, and what
each one means in the state it meets.

==============  ==========================================  ================
state           input                                       next state
==============  ==========================================  ================
accepted        admit_plain / admit_tls                       registering / handshaking
accepted        refuse (server full, too many from there)   closing
handshaking     handshake_done (TLS)                         registering
registering     hold (a password or the chat's answer is    authenticating
                awaited: what arrives meanwhile is held)
authenticating  release (the verdict is in)                 registering
registering,    attach (the chat gave it a session)         registered
authenticating
registered      release (the answer that attached it)       registered
(live)          deadline                                    (same): what it means
(live)          close (on purpose: ERR, BYE, cut, abort)    closing
(live)          lost (the peer, or the network, ended it)   closed
closing         lost                                        closed
==============  ==========================================  ================

The live states are handshaking, registering, authenticating and registered; closing and
closed are ended.  The one deadline of a connection (its ``TimeoutMixin`` timer) is an input
whose meaning belongs to the state it meets: before registration it is the registration
deadline (``ERR 408``), once registered the heartbeat's idle verdict, once ended nothing.
An input a state does not expect raises :class:`automat.NoTransition`: a path of the
connection code that sends one is a bug, never a decision taken on a stale flag.

The machine only decides: every input returns what it means, and
:class:`~hbchat.server.connection.ChatServerProtocol` acts on it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from automat import TypeMachineBuilder

from hbchat.machines import edge


class Phase(enum.Enum):
    """The states by name, with whether the connection is over as far as the chat is concerned."""

    ACCEPTED = ("accepted", False)
    HANDSHAKING = ("handshaking", False)
    REGISTERING = ("registering", False)
    AUTHENTICATING = ("authenticating", False)
    REGISTERED = ("registered", False)
    CLOSING = ("closing", True)
    CLOSED = ("closed", True)

    def __init__(self, label: str, ended: bool) -> None:
        self.label = label
        #: No more input is handled and no more output is queued.
        self.ended = ended


class Deadline(enum.Enum):
    """What the connection's timer running out means, by the state it meets."""

    #: Not registered within --register-timeout: ERR 408 and close.
    REGISTRATION = "registration"
    #: Registered: the heartbeat judges the silence (--timeout).
    IDLE = "idle"
    #: Already ended: nothing.
    NONE = "none"


class Attach(enum.Enum):
    """What the chat attaching a session means."""

    #: A registration: the handshake (counted by --max-handshakes) is over.
    REGISTERED = "registered"
    #: The connection ended while the chat was answering: the session is not held by it.
    TOO_LATE = "too_late"


class Closing(enum.Enum):
    """What closing on purpose means, by the state it ends."""

    #: Not registered yet: it was still counted as a handshake under way.
    UNREGISTERED = "unregistered"
    #: Registered: it leaves the chat.
    REGISTERED = "registered"
    #: Already closing or closed: nothing more to do.
    ALREADY = "already"


class Ending(enum.Enum):
    """How the connection ended, by the state the loss met."""

    #: We had closed it: the reason is ours.
    ON_PURPOSE = "on_purpose"
    #: The peer went before its TLS handshake completed.
    IN_HANDSHAKE = "in_handshake"
    #: The peer went while registering (counted as a handshake under way).
    UNREGISTERED = "unregistered"
    #: The peer went while registered.
    REGISTERED = "registered"


class ConnectionLife(Protocol):
    """The inputs of a server connection's lifecycle."""

    def admit_plain(self) -> None:
        """Admitted on a plain (or UNIX) socket: registration starts at once."""

    def admit_tls(self) -> None:
        """Admitted on an ssl: listener: its TLS handshake comes first."""

    def refuse(self) -> None:
        """Not admitted: the refusal is written and the connection closed."""

    def handshake_done(self) -> bool:
        """The TLS handshake completed; whether the connection still lives to produce output."""

    def hold(self) -> bool:
        """A verdict (a password, the chat's answer to NICK or RESUME) is awaited; whether holding starts now."""

    def release(self) -> bool:
        """The verdict is in; whether the lines held meanwhile are still to be handled."""

    def attach(self) -> Attach:
        """The chat attached a session to the connection."""

    def deadline(self) -> Deadline:
        """The connection's timer ran out."""

    def close(self) -> Closing:
        """We end the connection on purpose."""

    def lost(self) -> Ending:
        """The transport is gone (``connectionLost``)."""


@dataclass(slots=True)
class LifeCore:
    """
    The state by name, written by every transition that changes it and by nothing else, so
    that what is asked on every read (has the connection ended? is it holding its input?)
    costs an attribute read rather than an input.  Slotted: every connection has one.
    """

    phase: Phase = Phase.ACCEPTED


_builder = TypeMachineBuilder(ConnectionLife, LifeCore)
accepted = _builder.state(Phase.ACCEPTED.label)
handshaking = _builder.state(Phase.HANDSHAKING.label)
registering = _builder.state(Phase.REGISTERING.label)
authenticating = _builder.state(Phase.AUTHENTICATING.label)
registered = _builder.state(Phase.REGISTERED.label)
closing = _builder.state(Phase.CLOSING.label)
closed = _builder.state(Phase.CLOSED.label)


UNREGISTERED = (handshaking, registering, authenticating)
LIVE = (*UNREGISTERED, registered)
ENDED = (closing, closed)

# --- admission and TLS ---
edge(accepted, ConnectionLife.admit_plain, registering, Phase.REGISTERING, None)
edge(accepted, ConnectionLife.admit_tls, handshaking, Phase.HANDSHAKING, None)
edge(accepted, ConnectionLife.refuse, closing, Phase.CLOSING, None)
edge(handshaking, ConnectionLife.handshake_done, registering, Phase.REGISTERING, True)
for _state in ENDED:
    _state.upon(ConnectionLife.handshake_done).loop().returns(False)

# --- registration ---
edge(registering, ConnectionLife.hold, authenticating, Phase.AUTHENTICATING, True)
authenticating.upon(ConnectionLife.hold).loop().returns(False)  # the chat's answer after a password's
edge(authenticating, ConnectionLife.release, registering, Phase.REGISTERING, True)
registered.upon(ConnectionLife.release).loop().returns(True)  # the answer that attached it
for _state in ENDED:
    _state.upon(ConnectionLife.release).loop().returns(False)
edge(registering, ConnectionLife.attach, registered, Phase.REGISTERED, Attach.REGISTERED)
edge(authenticating, ConnectionLife.attach, registered, Phase.REGISTERED, Attach.REGISTERED)
for _state in ENDED:
    _state.upon(ConnectionLife.attach).loop().returns(Attach.TOO_LATE)

# --- the deadline, by the state it meets ---
for _state in UNREGISTERED:
    _state.upon(ConnectionLife.deadline).loop().returns(Deadline.REGISTRATION)
registered.upon(ConnectionLife.deadline).loop().returns(Deadline.IDLE)
for _state in ENDED:
    _state.upon(ConnectionLife.deadline).loop().returns(Deadline.NONE)

# --- the end ---
for _state in UNREGISTERED:
    edge(_state, ConnectionLife.close, closing, Phase.CLOSING, Closing.UNREGISTERED)
edge(registered, ConnectionLife.close, closing, Phase.CLOSING, Closing.REGISTERED)
for _state in ENDED:
    _state.upon(ConnectionLife.close).loop().returns(Closing.ALREADY)
edge(closing, ConnectionLife.lost, closed, Phase.CLOSED, Ending.ON_PURPOSE)
edge(handshaking, ConnectionLife.lost, closed, Phase.CLOSED, Ending.IN_HANDSHAKE)
edge(registering, ConnectionLife.lost, closed, Phase.CLOSED, Ending.UNREGISTERED)
edge(authenticating, ConnectionLife.lost, closed, Phase.CLOSED, Ending.UNREGISTERED)
edge(registered, ConnectionLife.lost, closed, Phase.CLOSED, Ending.REGISTERED)

_build: Callable[[LifeCore], ConnectionLife] = _builder.build()


def connection_life(core: LifeCore) -> ConnectionLife:
    """A connection's lifecycle in its first state (``accepted``); ``core.phase`` follows it."""
    return _build(core)
