"""
The client's life as an automat machine: which of its connections' events are legal when.

==============  ==========================================  ================
state           input                                       next state
==============  ==========================================  ================
connecting      hello                                       greeted
connecting      hello_overdue (no HELLO in HELLO_TIMEOUT)    connecting (the
                                                            attempt is aborted)
greeted         register (NICK) / resume (RESUME)           registering / resuming
registering     welcome                                     ready
registering     own_nick_held (ERR 433, our own lost NICK)    nick_held
resuming        welcome (the replay follows)                resuming
resuming        register (ERR 404: the session is gone)     registering
resuming        replay_ended (RESUMED)                       ready
(connected)     lost (an attempt failed, a connection       backing_off
                ended; in quitting it stays)
backing_off     connect (the next attempt)                  connecting
ready           quit (QUIT is sent, BYE awaited)            quitting
(not ready)     quit (the connection is closed)             quitting
quitting        give_up / quit_timed_out (no BYE came)         gave_up / quitting
(alive)         give_up / out_of_time (--give-up-after)        gave_up / same
==============  ==========================================  ================

One machine lives as long as its :class:`~hbchat.client.factory.ChatClientFactory`, across
connections.  The machine only decides; every input returns what it means for the factory
(a :class:`Loss`, a :class:`Welcome`, a :class:`Quit`, or whether something applies), and the
factory does the writing, the scheduling and the telling.  Deadlines are inputs of the states
they belong to: ``hello_overdue`` (no HELLO within HELLO_TIMEOUT) aborts an attempt only while
connecting, ``out_of_time`` (``--give-up-after`` without a connection) matters only while
there is no registered connection, ``quit_timed_out`` (no BYE after QUIT) only while quitting.
An input a state does not expect raises :class:`automat.NoTransition`; the protocol turns
one caused by a server's line into a log line, never a crash.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from automat import TypeMachineBuilder
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from hbchat.machines import edge


class Loss(enum.Enum):
    """What a failed attempt or a lost connection means, by the state it ended."""

    #: Before any registration was sent: a plain failure.
    UNGREETED = "ungreeted"
    #: After HELLO, before WELCOME, not registering: a plain failure (the TLS held).
    GREETED = "greeted"
    #: A NICK went unanswered: the server may hold our nick until its --grace ends.
    REGISTRATION = "registration"
    #: We closed it ourselves on an ERR 433 for our own held nick: wait that out.
    OWN_NICK = "own_nick"
    #: A registered connection: the time without a connection starts now.
    READY = "ready"
    #: We had quit: this is the end.
    QUIT = "quit"
    #: We had given up already: nothing follows.
    FINAL = "final"
    #: Nothing was under way (a second report of the same end): ignore it.
    STALE = "stale"


class Welcome(enum.Enum):
    """What a WELCOME means."""

    #: A new session: registered and ready.
    READY = "ready"
    #: A resumed session: its replay follows, RESUMED ends it.
    REPLAY = "replay"
    #: We are leaving: answer with QUIT.
    LEAVE = "leave"


class Quit(enum.Enum):
    """What the user's quit asks the factory to do."""

    #: Registered: send QUIT and wait (at most QUIT_WAIT) for the server's BYE.
    SEND = "send"
    #: Not registered: close whatever connection there is and give up.
    CLOSE = "close"
    #: Already quitting or given up: nothing more.
    NOTHING = "nothing"


class ClientLife(Protocol):
    """The inputs of the client's lifecycle."""

    def connect(self) -> None:
        """A connection attempt starts (the first, or after a backoff)."""

    def hello(self) -> bool:
        """The server greeted us with a valid HELLO; whether to go on (not once we quit or gave up)."""

    def hello_overdue(self) -> bool:
        """No HELLO came within HELLO_TIMEOUT of connecting; whether the attempt is to be aborted."""

    def register(self) -> None:
        """We sent NICK (after HELLO, or after ERR 404 on RESUME)."""

    def resume(self) -> None:
        """We sent RESUME with our session's token."""

    def welcome(self) -> Welcome:
        """WELCOME arrived."""

    def replay_ended(self) -> None:
        """RESUMED arrived: the replay is over."""

    def own_nick_held(self) -> None:
        """ERR 433 on our NICK, most likely held by our own interrupted registration: we close and wait."""

    def lost(self) -> Loss:
        """The attempt failed or the connection ended."""

    def out_of_time(self) -> bool:
        """``--give-up-after`` without a connection ran out; whether that ends the client."""

    def quit(self) -> Quit:
        """The user quits."""

    def quit_timed_out(self) -> bool:
        """No BYE came within QUIT_WAIT of our QUIT; whether the connection is to be dropped."""

    def give_up(self) -> bool:
        """No more attempts; whether this is news (the observer hears of it once)."""


class Phase(enum.Enum):
    """The machine's states by name (``LifeCore.phase``)."""

    CONNECTING = "connecting"
    GREETED = "greeted"
    REGISTERING = "registering"
    RESUMING = "resuming"
    NICK_HELD = "nick_held"
    READY = "ready"
    BACKING_OFF = "backing_off"
    QUITTING = "quitting"
    GAVE_UP = "gave_up"


@dataclass
class LifeCore:
    """
    The machine's state by name, written by every transition that changes it and by nothing
    else, so that a question asked on every line (is the connection ready?) costs an attribute
    read, not an input (automat looks a transition up among all of them).  The factory holds
    the session's data.
    """

    phase: Phase = Phase.CONNECTING


_builder = TypeMachineBuilder(ClientLife, LifeCore)
connecting = _builder.state(Phase.CONNECTING.value)
greeted = _builder.state(Phase.GREETED.value)
registering = _builder.state(Phase.REGISTERING.value)
resuming = _builder.state(Phase.RESUMING.value)
nick_held = _builder.state(Phase.NICK_HELD.value)
ready = _builder.state(Phase.READY.value)
backing_off = _builder.state(Phase.BACKING_OFF.value)
quitting = _builder.state(Phase.QUITTING.value)
gave_up = _builder.state(Phase.GAVE_UP.value)


ALIVE = (connecting, greeted, registering, resuming, nick_held, ready, backing_off)

# --- connecting and greeting ---
connecting.upon(ClientLife.connect).loop().returns(None)
edge(backing_off, ClientLife.connect, connecting, Phase.CONNECTING, None)
edge(connecting, ClientLife.hello, greeted, Phase.GREETED, True)
quitting.upon(ClientLife.hello).loop().returns(False)
gave_up.upon(ClientLife.hello).loop().returns(False)
edge(greeted, ClientLife.register, registering, Phase.REGISTERING, None)
edge(greeted, ClientLife.resume, resuming, Phase.RESUMING, None)

connecting.upon(ClientLife.hello_overdue).loop().returns(True)  # the server is taken for dead
for _state in (greeted, registering, resuming, quitting, gave_up):
    # The HELLO came (and was answered) in the turn before the verdict, after a stall of
    # ours; or we are leaving anyway.
    _state.upon(ClientLife.hello_overdue).loop().returns(False)

# --- registering and resuming ---
edge(registering, ClientLife.welcome, ready, Phase.READY, Welcome.READY)
resuming.upon(ClientLife.welcome).loop().returns(Welcome.REPLAY)
edge(resuming, ClientLife.register, registering, Phase.REGISTERING, None)  # ERR 404: the session is gone
edge(resuming, ClientLife.replay_ended, ready, Phase.READY, None)
edge(registering, ClientLife.own_nick_held, nick_held, Phase.NICK_HELD, None)
quitting.upon(ClientLife.welcome).loop().returns(Welcome.LEAVE)
gave_up.upon(ClientLife.welcome).loop().returns(Welcome.LEAVE)

# --- losing the connection ---
edge(connecting, ClientLife.lost, backing_off, Phase.BACKING_OFF, Loss.UNGREETED)
edge(greeted, ClientLife.lost, backing_off, Phase.BACKING_OFF, Loss.GREETED)
edge(resuming, ClientLife.lost, backing_off, Phase.BACKING_OFF, Loss.GREETED)
edge(registering, ClientLife.lost, backing_off, Phase.BACKING_OFF, Loss.REGISTRATION)
edge(nick_held, ClientLife.lost, backing_off, Phase.BACKING_OFF, Loss.OWN_NICK)
edge(ready, ClientLife.lost, backing_off, Phase.BACKING_OFF, Loss.READY)
quitting.upon(ClientLife.lost).loop().returns(Loss.QUIT)
gave_up.upon(ClientLife.lost).loop().returns(Loss.FINAL)
backing_off.upon(ClientLife.lost).loop().returns(Loss.STALE)

# --- the deadlines ---
for _state in (connecting, greeted, registering, resuming, nick_held, backing_off):
    _state.upon(ClientLife.out_of_time).loop().returns(True)  # the factory gives up
for _state in (ready, quitting, gave_up):
    _state.upon(ClientLife.out_of_time).loop().returns(False)  # a connection came, or we are leaving anyway
quitting.upon(ClientLife.quit_timed_out).loop().returns(True)
gave_up.upon(ClientLife.quit_timed_out).loop().returns(False)

# --- leaving ---
edge(ready, ClientLife.quit, quitting, Phase.QUITTING, Quit.SEND)
for _state in (connecting, greeted, registering, resuming, nick_held, backing_off):
    edge(_state, ClientLife.quit, quitting, Phase.QUITTING, Quit.CLOSE)
quitting.upon(ClientLife.quit).loop().returns(Quit.NOTHING)
gave_up.upon(ClientLife.quit).loop().returns(Quit.NOTHING)
for _state in (*ALIVE, quitting):
    edge(_state, ClientLife.give_up, gave_up, Phase.GAVE_UP, True)
gave_up.upon(ClientLife.give_up).loop().returns(False)

#: A new lifecycle, connecting: ``client_life()``.
_build: Callable[[LifeCore], ClientLife] = _builder.build()


def client_life(core: LifeCore | None = None) -> ClientLife:
    """A client's lifecycle, in its first state (``connecting``); ``core.phase`` follows it."""
    return _build(core if core is not None else LifeCore())


class Deadline:
    """
    One timer that feeds the machine an input when it runs out: ``start`` arms it (unless it
    runs already), ``stop`` disarms it, and ``fire`` is called at most once per arming.
    """

    def __init__(self, clock: IReactorTime, seconds: float | None, fire: Callable[[], None]) -> None:
        self.clock = clock
        #: ``None``: never armed.
        self.seconds = seconds
        self._fire = fire
        self._call: IDelayedCall | None = None

    @property
    def running(self) -> bool:
        return self._call is not None

    def start(self) -> None:
        if self.seconds is None or self._call is not None:
            return
        self._call = self.clock.callLater(self.seconds, self._expired)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _expired(self) -> None:
        self._call = None
        self._fire()
