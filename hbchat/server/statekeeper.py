"""
``--state FILE``: the chat written to a file at a graceful stop and read back at the start.

At start the file is read (:func:`hbchat.server.statefile.decode`) and the chat continues
where it was: its seq, its history and its sessions, so that clients told ``BYE shutdown``
RESUME with ``RESUMED <n> complete``.  The file is then removed: a state is used once, so a
later crash (which saves nothing) never brings back an old seq.  When the drain is over
(SIGTERM), the chat is written to a temporary file beside it (mode 0600: it holds the
session tokens), flushed to disk, and renamed over it, so a reader sees the old file or the
new one, never half of one.

Nothing here stops the server: a missing file is a fresh chat (one info line); a file that
cannot be read, is damaged, or is another program's, is one error line and a fresh chat; a
state that cannot be written is one error line at the stop.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from twisted.logger import LogLevel

from hbchat.lognames import NamedLogger
from hbchat.server.chat import Chat
from hbchat.server.statefile import MAX_BYTES, ChatState, StateFileError, decode, encode


@dataclass(frozen=True)
class _Fresh:
    """Why the chat starts afresh: the log line's format, its ``error`` field, and whether there was simply no file."""

    text: str
    error: str | None
    missing: bool = False


class StateFile:
    """One chat's ``--state`` file: :meth:`restore` at start, :meth:`save` at the stop."""

    log = NamedLogger("hbchat.server.state")

    def __init__(
        self,
        path: str,
        chat: Chat,
        wall: Callable[[], float] = time.time,
        once_serving: Callable[[Callable[[], None]], object] | None = None,
    ) -> None:
        self.path = path
        self.chat = chat
        #: Wall-clock time: grace periods are saved as moments, so the downtime counts.
        self.wall = wall
        #: Runs a function once the server serves (its listeners bound: twistd's
        #: reactor.callWhenRunning); None: at once.
        self.onceServing = once_serving

    def read(self) -> ChatState | _Fresh:
        """The saved state, or why there is none this server can use (not logged here)."""
        try:
            with open(self.path, "rb") as file:
                data = file.read(MAX_BYTES + 1)
        except FileNotFoundError:
            return _Fresh("no state file {path}: a fresh chat", None, missing=True)
        except OSError as error:
            return _Fresh("cannot read state file {path}: {error}; starting a fresh chat", _why(error))
        try:
            return decode(data)
        except StateFileError as error:
            return _Fresh("state file {path} is unusable ({error}); starting a fresh chat", str(error))

    def restore(self) -> bool:
        """
        Continue the saved chat, if there is one; whether there was.  Whatever happened is
        one log line, which also says when the chat cannot be saved at the stop.
        """
        state = self.read()
        directory = os.path.dirname(os.path.abspath(self.path))
        writable = os.access(directory, os.W_OK | os.X_OK)
        note = (
            "" if writable else f"; its directory {directory} is not writable: the chat will not be saved at the stop"
        )
        if isinstance(state, _Fresh):
            level = LogLevel.info if state.missing and writable else LogLevel.error
            self.log.emit(level, state.text + "{note}", path=self.path, error=state.error, note=note)
            return False
        sessions = self.chat.restoreState(state, self.wall())
        self.log.emit(
            LogLevel.info if writable else LogLevel.error,
            "chat restored from {path}: seq {seq}, {events} events of history, "
            "{sessions} of {saved} sessions resumable{note}",
            path=self.path,
            seq=state.seq,
            events=len(self.chat.history),
            sessions=sessions,
            saved=len(state.sessions),
            note=note,
        )
        # Removed once the server serves, not before: a start that fails (a port in use) must
        # leave the saved chat for the next one.
        if self.onceServing is None:
            self.consume()
        else:
            self.onceServing(self.consume)
        return True

    def consume(self) -> None:
        """The saved chat is in use: remove the file, so that a crash (which saves nothing) never restores it again."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as error:
            self.log.warn(
                "cannot remove state file {path} after reading it ({error}): a restart without a clean stop would "
                "read it again",
                path=self.path,
                error=_why(error),
            )

    def save_at_stop(self) -> None:
        """The drain is over: save (what went wrong is logged)."""
        self.save()

    def save(self) -> bool:
        """Write the chat now, atomically; whether it was written (a failure is logged)."""
        state = self.chat.exportState(self.wall())
        try:
            write_atomically(self.path, encode(state))
        except OSError as error:
            self.log.error(
                "cannot save the chat to state file {path}: {error}; the next start is a fresh chat",
                path=self.path,
                error=_why(error),
            )
            return False
        self.log.info(
            "chat saved to {path}: seq {seq}, {events} events of history, {sessions} sessions",
            path=self.path,
            seq=state.seq,
            events=len(state.history),
            sessions=len(state.sessions),
        )
        return True


def _why(error: OSError) -> str:
    return error.strerror or str(error)


def write_atomically(path: str, data: bytes) -> None:
    """
    Replace ``path`` by a file holding ``data`` (mode 0600) so that it is the old file or the
    new one, never a mix, even across a power cut: a temporary file in the same directory,
    fsync, rename, fsync of the directory.
    """
    directory = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            os.fchmod(file.fileno(), 0o600)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def keep_state(
    chat: object,
    path: str,
    wall: Callable[[], float] = time.time,
    once_serving: Callable[[Callable[[], None]], object] | None = None,
) -> StateFile | None:
    """
    Restore ``chat`` from ``path`` now and save it there when the drain is over; ``None`` (and
    a warning) for a chat not kept in this process's memory (a cluster's, in Redis), which a
    state file cannot hold.
    """
    if not isinstance(chat, Chat):
        StateFile.log.warn(
            "--state {path} is ignored: the chat is not kept in this process (with --redis it is in Redis)", path=path
        )
        return None
    state = StateFile(path, chat, wall, once_serving)
    state.restore()
    chat.beforeClose.append(state.save_at_stop)
    return state
