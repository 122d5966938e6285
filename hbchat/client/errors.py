"""
What the client does about a server's ERR: :mod:`hbchat.client.policy` decides which
:class:`~hbchat.client.policy.ErrorAction` applies, :class:`ServerErrors` carries it out on
its factory's session, outbox, lifecycle and observer.
"""

from __future__ import annotations

from collections.abc import Callable

from hbchat.client.lifecycle import ClientLife
from hbchat.client.outbox import PacedOutbox
from hbchat.client.policy import ErrorAction, ErrorContext, error_action
from hbchat.client.protocol import ChatClientProtocol
from hbchat.client.session import ClientSession
from hbchat.interfaces import IChatObserver


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
    ) -> None:
        self.session = session
        self.observer = observer
        self.outbox = outbox
        self.life = life
        self.register = register
        self.give_up = give_up

    def handle(self, protocol: ChatClientProtocol, code: int, text: str, own_nick_recent: bool) -> None:
        """An ERR on ``protocol``; ``own_nick_recent``: a NICK of ours was lost unanswered lately."""
        context = ErrorContext(
            code,
            resuming=protocol.resuming,
            registering=protocol.registering,
            ready=protocol.ready,
            own_nick_recent=own_nick_recent,
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
            ErrorAction.REPORT: self._report,
        }

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
        if not protocol.ready:
            protocol.problem = f"the server said ERR {code} {text}"
        self.observer.serverError(code, text)
