"""
What ``hbchat-client`` shows and reads: :class:`Console` (the chat, as an
:class:`~hbchat.interfaces.IChatObserver`, and ``/commands``) and :class:`InputLines`
(stdin, one line at a time, with backpressure while the outbox fills).  Every text from the
network goes through :func:`hbchat.client.visible.visible` before it reaches the terminal.
"""

from __future__ import annotations

import time
from typing import Any, TextIO

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from hbchat.client.factory import ChatClientFactory
from hbchat.client.session import OutboxFullError
from hbchat.client.visible import visible
from hbchat.interfaces import IChatObserver

HELP = """\
-- commands:
--   <text>            say <text> to everyone
--   /who              list who is here
--   /tell NICK TEXT   say TEXT to NICK only
--   /rtt              show the last round-trip time to the server
--   /quit [TEXT]      leave
--   /help             this list"""


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def stamp(clock: IReactorTime) -> str:
    return time.strftime("%H:%M:%S", time.localtime(clock.seconds()))


@implementer(IChatObserver)
class Console:
    """Shows a chat to a person (or a script) and turns input lines into commands."""

    def __init__(self, out: TextIO, err: TextIO, clock: IReactorTime, interactive: bool) -> None:
        self.out = out
        self.err = err
        self.clock = clock
        self.interactive = interactive
        self.factory: ChatClientFactory | None = None
        self.finished: Deferred[int] = Deferred()
        self.inputDone = False
        self.failed = False
        self.lastRtt: float | None = None
        self.stdin: Any = None

    # --- output ---

    def show(self, text: str) -> None:
        """Print a line; any control character in it (from another user, say) is shown, not obeyed."""
        self.out.write(visible(text) + "\n")
        self.out.flush()

    def complain(self, text: str) -> None:
        """One ``hbchat-client: ...`` line on stderr, control characters shown."""
        self.err.write(f"hbchat-client: {visible(text)}\n")
        self.err.flush()

    def notice(self, text: str) -> None:
        self.show("-- " + text)

    def registered(self, nick: str, resumed: bool) -> None:
        if not resumed:
            self.notice(f"connected as {nick}; /help lists commands" if self.interactive else f"connected as {nick}")
        self._maybeReadMore()
        self._maybeFinish()

    def message(self, seq: int, nick: str, text: str, own: bool) -> None:
        self.show(f"{stamp(self.clock)} <{nick}> {text}")
        if own:
            self._maybeReadMore()
            self._maybeFinish()

    # --- reading a pipe no faster than the server takes it ---

    #: From a pipe, stop reading while this many lines wait to be delivered.
    BACKLOG = 500

    def _backlog(self) -> int:
        session = self.factory.session if self.factory is not None else None
        return len(session.outbox) + len(session.unechoed) if session is not None else 0

    def shouldStopReading(self) -> bool:
        """A pipe is read only while connected and while not too much waits for its echo."""
        if self.interactive or self.factory is None:
            return False
        return not self.factory.connected or self._backlog() >= self.BACKLOG

    def _maybeReadMore(self) -> None:
        stdin = self.stdin
        if stdin is not None and stdin.paused and not self.shouldStopReading() and self._backlog() < self.BACKLOG // 2:
            stdin.resumeProducing()

    def private(self, sender: str, text: str) -> None:
        self.show(f"{stamp(self.clock)} *{sender}* {text}")

    def joined(self, seq: int, nick: str) -> None:
        self.notice(f"{nick} joined")

    def left(self, seq: int, nick: str, reason: str) -> None:
        self.notice(f"{nick} left ({reason})")

    def users(self, nicks: list[str]) -> None:
        self.notice("here: " + " ".join(nicks))

    def resumed(self, count: int, complete: bool, missing: int | None) -> None:
        self.notice(f"resumed: {_plural(count, 'missed message')}")
        if not complete:
            if missing:
                self.notice(
                    f"history gap: {_plural(missing, 'earlier event')} (messages, joins or leaves) "
                    "were too old for the server's history and are not shown"
                )
            else:
                self.notice(
                    "history gap: the server could not replay everything since we left; some events are missing"
                )
        self._maybeFinish()

    def historyLost(self) -> None:
        # What is known: the session is gone (a restart, or away longer than the server's
        # --grace); not whether anything was said meanwhile.
        self.notice(
            "new session: the server no longer knew ours (restarted, or we were away too long); "
            "anything said while we were away cannot be shown"
        )

    def serverError(self, code: int, text: str) -> None:
        self.notice(f"server says: ERR {code} {text}")

    def disconnected(self, reason: str) -> None:
        """Nothing to show yet: the retry line (or the reason for giving up) that follows says why."""

    def reconnecting(self, delay: float, attempt: int, reason: str) -> None:
        self.notice(f"{reason}; reconnecting in {delay:.1f} s (attempt {attempt})")

    def gaveUp(self, reason: str) -> None:
        quitting = reason == "you quit"
        if not quitting:
            self.complain(reason)
        self._finish(0 if quitting and not self.failed else 1)

    def rtt(self, seconds: float) -> None:
        self.lastRtt = seconds

    # --- input ---

    def lineTyped(self, line: str) -> None:
        factory = self.factory
        assert factory is not None
        if not line and not self.interactive:
            return
        try:
            if self.interactive and line.startswith("/"):
                self._command(factory, line)
            else:
                factory.say(line)
                if not factory.connected and self.interactive:
                    self.notice("not connected: will send when reconnected")
        except (OutboxFullError, ValueError) as error:
            self._refuse(f"not sent: {error}")

    def _refuse(self, text: str) -> None:
        if self.interactive:
            self.notice(text)
        else:
            self.failed = True
            self.complain(text)

    def _command(self, factory: ChatClientFactory, line: str) -> None:
        command, _, rest = line[1:].partition(" ")
        command = command.lower()
        if command == "who":
            if not factory.who():
                self.notice("not connected")
        elif command == "tell":
            nick, _, text = rest.partition(" ")
            if not nick or not text:
                self.notice("usage: /tell NICK TEXT")
            else:
                factory.tell(nick, text)
                # The server sends nothing back for a TELL: show the sender what went out.
                self.show(f"{stamp(self.clock)} -> *{nick}* {text}")
                if not factory.connected:
                    self.notice("not connected: will send when reconnected")
        elif command == "rtt":
            if self.lastRtt is None:
                self.notice("no round trip measured yet")
            else:
                self.notice(f"round trip: {self.lastRtt * 1000:.1f} ms")
        elif command == "quit":
            factory.quit(rest)
        elif command == "help":
            for line in HELP.splitlines():
                self.show(line)
        else:
            self.notice(f"unknown command /{command}; /help lists them")

    def inputEnded(self) -> None:
        """stdin closed: on a terminal that means quit; from a pipe, finish delivering."""
        self.inputDone = True
        factory = self.factory
        assert factory is not None
        if self.interactive:
            factory.quit()
        else:
            self._maybeFinish()

    def _maybeFinish(self) -> None:
        factory = self.factory
        if self.interactive or not self.inputDone or factory is None:
            return
        if factory.session.idle and factory.connected:
            factory.quit()

    def _finish(self, code: int) -> None:
        if not self.finished.called:
            self.finished.callback(code)


class InputLines(LineReceiver):
    """stdin, one line at a time, with backpressure while the outbox fills."""

    delimiter = b"\n"
    MAX_LENGTH = 1 << 20

    def __init__(self, console: Console) -> None:
        self.console = console

    def connectionMade(self) -> None:
        self.console.stdin = self

    def lineReceived(self, line: bytes) -> None:
        text = line.rstrip(b"\r").decode("utf-8", "replace")
        self.console.lineTyped(text)
        if self.console.shouldStopReading():
            # LineReceiver's own pause: it also holds back the lines already read.
            self.pauseProducing()

    def lineLengthExceeded(self, line: bytes) -> None:
        self.console._refuse("not sent: a line of input is longer than 1 MiB")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.console.inputEnded()
