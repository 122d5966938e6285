"""
What the client does about a server's ERR: :mod:`hbchat.client.policy` decides which
:class:`~hbchat.client.policy.ErrorAction` applies, :class:`ServerErrors` carries it out on
its factory's session, outbox, lifecycle and observer.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from hbchat.client.lifecycle import ClientLife
from hbchat.client.outbox import PacedOutbox
from hbchat.client.policy import ErrorAction, ErrorContext, error_action
from hbchat.client.protocol import ChatClientProtocol
from hbchat.client.session import ClientSession
from hbchat.client.unavailable import refused_verb
from hbchat.interfaces import IChatObserver


class LoginAgain:
    """Sends a NICK or RESUME refused by ERR 503 cluster unavailable again, on the same connection, after a wait."""

    def __init__(
        self,
        clock: IReactorTime,
        session: ClientSession,
        nick_line: Callable[[], bytes],
        current: Callable[[ChatClientProtocol], bool],
    ) -> None:
        self.clock = clock
        self.session = session
        self.nickLine = nick_line
        #: Whether a connection is still the client's own.
        self.current = current
        self._call: IDelayedCall | None = None

    def schedule(self, protocol: ChatClientProtocol, verb: str, wait: float) -> None:
        self.cancel()
        self._call = self.clock.callLater(wait, self._again, protocol, verb)

    def _again(self, protocol: ChatClientProtocol, verb: str) -> None:
        self._call = None
        if not self.current(protocol) or protocol.transport is None:
            return
        session = self.session
        if verb == "NICK" and protocol.registering:
            protocol.sendLine(self.nickLine())
        elif verb == "RESUME" and protocol.resuming and session.token is not None:
            protocol.sendLine(b"RESUME %s %d\n" % (session.token, session.last_seq))

    def cancel(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None


class ServerErrors:
    """One action per :class:`~hbchat.client.policy.ErrorAction`, on one client's session."""

    def __init__(
        self,
        session: ClientSession,
        observer: IChatObserver,
        outbox: PacedOutbox,
        life: ClientLife,
        register: Callable[[ChatClientProtocol], None],
        give_up: Callable[[str], None],
        rng: random.Random | None = None,
        login_again: LoginAgain | None = None,
    ) -> None:
        self.session = session
        self.observer = observer
        self.outbox = outbox
        self.life = life
        self.register = register
        self.give_up = give_up
        self.rng = rng or random.Random()
        #: Sends NICK or RESUME again on this connection after a wait (ERR 503 cluster unavailable).
        self.login_again = login_again

    def handle(self, protocol: ChatClientProtocol, code: int, text: str, own_nick_recent: bool) -> None:
        """An ERR on ``protocol``; ``own_nick_recent``: a NICK of ours was lost unanswered lately."""
        context = ErrorContext(
            code,
            resuming=protocol.resuming,
            registering=protocol.registering,
            ready=protocol.ready,
            own_nick_recent=own_nick_recent,
            text=text,
        )
        self._handlers[error_action(context)](protocol, code, text)

    @property
    def _handlers(self) -> dict[ErrorAction, Callable[[ChatClientProtocol, int, str], None]]:
        return {
            ErrorAction.REGISTER_AFRESH: self._register_afresh,
            ErrorAction.WAIT_FOR_OWN_NICK: self._wait_for_own_nick,
            ErrorAction.DROP_REFUSED: self._drop_refused,
            ErrorAction.SLOW_DOWN: self._slow_down,
            ErrorAction.GIVE_UP: self._refused,
            ErrorAction.CLUSTER_WAIT: self._cluster_unavailable,
            ErrorAction.REPORT: self._report,
        }

    def _cluster_unavailable(self, protocol: ChatClientProtocol, code: int, text: str) -> None:
        """
        ``ERR 503 cluster unavailable: <VERB> not handled``: the connection stays; the
        refused line is kept and sent again after a jittered wait (hbchat.client.unavailable).
        A SAY refused is our oldest unechoed one, a TELL the one in flight (the server
        answers lines in order): each goes back to the front of the outbox, in the order sent.
        """
        verb = refused_verb(text)
        if verb == "SAY":
            refused = self.session.refuse_oldest()
            if refused is not None:
                self.outbox.requeue(b"SAY " + refused)
        elif verb == "TELL":
            self.outbox.tell_refused(again=True)
        first = self.outbox.unavailable == 0
        wait = self.outbox.hold_for(self.rng)
        if verb in ("NICK", "RESUME") and self.login_again is not None:
            self.login_again.schedule(protocol, verb, wait)
        if first:
            self.observer.serverError(code, f"{text}: kept, sent again in {wait:.1f} s")

    def _register_afresh(self, protocol: ChatClientProtocol, code: int, text: str) -> None:
        self.session.forget()
        self.observer.historyLost()
        self.register(protocol)

    def _wait_for_own_nick(self, protocol: ChatClientProtocol, code: int, text: str) -> None:
        # Most likely our own interrupted registration: wait for its grace to end,
        # without using up the retries (the server will let the nick go).
        protocol.problem = "the nick is still held, probably by our own interrupted registration"
        self.life.own_nick_held()
        protocol.link.loseConnection()

    def _drop_refused(self, protocol: ChatClientProtocol, code: int, text: str) -> None:
        # The server answers lines in order: the line it refused is the oldest one not
        # yet echoed.  Sending it again would only be refused again, for ever.
        refused = self.session.refuse_oldest()
        shown = refused.decode("utf-8", "replace")[:60] if refused is not None else "a line"
        protocol.problem = "the server refused a line as too long"
        self.observer.serverError(code, f"{text}: not sent again: {shown!r}")

    def _slow_down(self, protocol: ChatClientProtocol, code: int, text: str) -> None:
        note = self.outbox.rate_limited(text)
        self.observer.serverError(429, f"{text}: {note}")
        self.outbox.flush()

    def _refused(self, protocol: ChatClientProtocol, code: int, text: str) -> None:
        self.give_up(f"the server refused us: ERR {code} {text}")
        protocol.link.loseConnection()

    def _report(self, protocol: ChatClientProtocol, code: int, text: str) -> None:
        if code == 406:  # no such nick: the TELL in flight was handled, for good
            self.outbox.tell_refused(again=False)
        if not protocol.ready:
            protocol.problem = f"the server said ERR {code} {text}"
        self.observer.serverError(code, text)
