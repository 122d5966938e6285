"""
``--state FILE`` (hbchat.server.statekeeper): the chat saved when the drain is over and
continued by the next server, on fake clocks and a real temporary directory.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

from twisted.logger import LogLevel, capturedLogs
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from hbchat.server.statefile import ChatState, SessionRecord, decode, encode
from hbchat.server.statekeeper import StateFile, keep_state, write_atomically
from hbchat.server.tap import ServerOptions
from hbchat.testing import FakePeer, FakeServer

#: Wall-clock time of the first server's stop.
STOPPED_AT = 1_764_920_000.0


class Wall:
    """A wall clock the test moves."""

    def __init__(self, now: float = STOPPED_AT) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def stop(server: FakeServer) -> None:
    """SIGTERM: drain at once, and let every connection close."""
    server.factory.shutdown()
    server.turn()
    for connection in list(server.factory.connections):
        connection.transport.loseConnection()  # type: ignore[union-attr]
    server.turn()


def token_of(lines: list[bytes]) -> tuple[bytes, int]:
    [welcome] = [line for line in lines if line.startswith(b"WELCOME ")]
    _, _, token, seq = welcome.split()
    return token, int(seq)


class RestartTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = os.path.join(self.mktemp(), "chat.state")
        os.makedirs(os.path.dirname(self.path))
        self.wall = Wall()
        self.first = FakeServer(grace=120)
        keep_state(self.first.factory.chat, self.path, self.wall)
        self.alice = self.first.connect()
        self.aliceToken, _ = token_of(self.alice.register("alice"))
        self.bob = self.first.connect()
        self.bobToken, _ = token_of(self.bob.register("bob"))
        self.alice.sendLine("SAY before the restart")
        self.aliceSaw = self.alice.received()  # JOIN bob, MSG ... before the restart

    def restart(self, down: float = 0.0, **settings: object) -> FakeServer:
        """Stop the first server, wait ``down`` seconds of wall-clock time, start the second."""
        stop(self.first)
        self.wall.now += down
        second = FakeServer(**settings)  # type: ignore[arg-type]
        keep_state(second.factory.chat, self.path, self.wall)
        return second

    def test_the_state_is_written_when_the_drain_is_over(self) -> None:
        stop(self.first)
        with open(self.path, "rb") as file:
            state = decode(file.read())
        self.assertEqual(state.seq, 3)
        self.assertEqual(state.history[-1], b"MSG 3 alice before the restart\n")
        self.assertEqual({record.nick for record in state.sessions}, {b"alice", b"bob"})

    def test_the_file_is_readable_by_its_owner_only(self) -> None:
        stop(self.first)
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)

    def test_a_session_resumes_complete_after_the_restart(self) -> None:
        second = self.restart()
        peer = second.connect()
        peer.sendLine(f"RESUME {self.aliceToken.decode()} 2")
        lines = peer.received()[1:]  # after HELLO
        self.assertEqual(lines[0], b"WELCOME alice " + self.aliceToken + b" 3")
        self.assertEqual(lines[1:3], [b"MSG 3 alice before the restart", b"RESUMED 1 complete"])
        self.assertEqual(lines[3], b"JOIN 4 alice")

    def test_a_resume_that_saw_everything_replays_nothing(self) -> None:
        second = self.restart()
        peer = second.connect()
        peer.sendLine(f"RESUME {self.bobToken.decode()} 3")
        self.assertEqual(peer.received()[1:3], [b"WELCOME bob " + self.bobToken + b" 3", b"RESUMED 0 complete"])

    def test_the_seq_continues_for_new_users(self) -> None:
        second = self.restart()
        lines = second.connect().register("carol")
        self.assertEqual(token_of(lines)[1], 3)
        self.assertIn(b"JOIN 4 carol", lines)

    def test_a_saved_session_keeps_its_nick_reserved(self) -> None:
        second = self.restart()
        self.assertIn(b"ERR 433 nick in use", second.connect().register("alice"))

    def test_the_downtime_counts_against_the_grace(self) -> None:
        second = self.restart(down=100)  # down for 100 of the 120 s
        second.advance(21)
        peer = second.connect()
        peer.sendLine(f"RESUME {self.aliceToken.decode()} 3")
        self.assertEqual(peer.received()[1:], [b"ERR 404 unknown session"])

    def test_sessions_whose_grace_ended_while_down_are_not_restored(self) -> None:
        second = self.restart(down=121)
        self.assertEqual(len(second.factory.chat.sessions), 0)
        self.assertIn(b"JOIN 4 alice", second.connect().register("alice"))

    def test_a_session_in_grace_at_the_stop_keeps_only_what_it_had_left(self) -> None:
        self.bob.lose()  # in grace from now: 120 s
        self.first.advance(100)
        second = self.restart()
        second.advance(21)
        self.assertIsNone(second.factory.chat.sessions.by_nick(b"bob"))
        self.assertIsNotNone(second.factory.chat.sessions.by_nick(b"alice"))

    def test_a_shorter_history_keeps_the_latest_events(self) -> None:
        second = self.restart(history=1)
        self.assertEqual(second.factory.chat.history.lines(), [b"MSG 3 alice before the restart\n"])
        peer = second.connect()
        peer.sendLine(f"RESUME {self.aliceToken.decode()} 1")
        self.assertIn(b"RESUMED 1 partial", peer.received())

    def test_the_file_is_used_once(self) -> None:
        self.restart()
        self.assertFalse(os.path.exists(self.path))

    def test_the_file_stays_until_the_server_serves(self) -> None:
        stop(self.first)
        serving: list[Callable[[], None]] = []
        keep_state(FakeServer().factory.chat, self.path, self.wall, once_serving=serving.append)
        self.assertTrue(os.path.exists(self.path))  # a start that fails now leaves it for the next one
        [consume] = serving
        consume()
        self.assertFalse(os.path.exists(self.path))

    def test_a_second_signal_saves_too(self) -> None:
        self.first.factory.shutdown(drain=30)
        self.first.factory.closeNow()
        with open(self.path, "rb") as file:
            self.assertEqual(decode(file.read()).seq, 3)


class FileTroubleTests(SynchronousTestCase):
    """What cannot be read or written is one log line and a fresh chat, never a crash."""

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "chat.state")
        self.server = FakeServer()

    def restore(self, path: str | None = None) -> tuple[bool, list[dict[str, object]]]:
        with capturedLogs() as events:
            restored = StateFile(path or self.path, self.server.factory.chat, Wall()).restore()
        return restored, [event for event in events if event.get("log_namespace") == "hbchat.server.state"]

    def assertFreshAfterOneLine(self, level: LogLevel, words: str, path: str | None = None) -> None:
        restored, events = self.restore(path)
        self.assertFalse(restored)
        self.assertEqual([event["log_level"] for event in events], [level], events)
        self.assertIn(words, str(events[0]["log_format"]) + str(events[0].get("error", "")))
        self.assertEqual(self.server.factory.chat.seq, 0)
        peer: FakePeer = self.server.connect()
        self.assertIn(b"JOIN 1 alice", peer.register("alice"))

    def write(self, data: bytes) -> None:
        with open(self.path, "wb") as file:
            file.write(data)

    def test_a_missing_file_is_a_fresh_chat(self) -> None:
        self.assertFreshAfterOneLine(LogLevel.info, "no state file")

    def test_a_corrupt_file_is_a_fresh_chat(self) -> None:
        self.write(b'{"format": "hbchat-state", "version": 1, "seq": 3, "hist')
        self.assertFreshAfterOneLine(LogLevel.error, "not JSON")

    def test_a_foreign_file_is_a_fresh_chat(self) -> None:
        self.write(b'{"some": "other program"}\n')
        self.assertFreshAfterOneLine(LogLevel.error, "not an hbchat state file")

    def test_a_file_of_another_version_is_a_fresh_chat(self) -> None:
        self.write(b'{"format": "hbchat-state", "version": 99}\n')
        self.assertFreshAfterOneLine(LogLevel.error, "version 99")

    def test_an_unreadable_file_is_a_fresh_chat(self) -> None:
        os.makedirs(self.path)  # a directory where the file should be: reading it fails, even as root
        self.assertFreshAfterOneLine(LogLevel.error, "cannot read state file")

    def test_a_damaged_file_is_left_for_inspection(self) -> None:
        self.write(b"garbage")
        self.restore()
        with open(self.path, "rb") as file:
            self.assertEqual(file.read(), b"garbage")

    def test_a_directory_that_is_not_there_is_said_at_the_start_in_the_same_line(self) -> None:
        path = os.path.join(self.directory, "missing", "chat.state")
        _, events = self.restore(path)
        self.assertEqual([event["log_level"] for event in events], [LogLevel.error])
        self.assertIn("no state file", str(events[0]["log_format"]))
        self.assertIn("is not writable: the chat will not be saved at the stop", str(events[0]["note"]))

    def test_a_state_that_cannot_be_written_is_one_error_line(self) -> None:
        path = os.path.join(self.directory, "missing", "chat.state")
        state = StateFile(path, self.server.factory.chat, Wall())
        with capturedLogs() as events:
            self.assertFalse(state.save())
        [event] = [event for event in events if event.get("log_namespace") == "hbchat.server.state"]
        self.assertEqual(event["log_level"], LogLevel.error)
        self.assertIn("cannot save the chat", str(event["log_format"]))

    def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(self) -> None:
        self.write(b"old")
        with self.assertRaises(TypeError):  # the write fails after the temporary file was made
            write_atomically(self.path, "not bytes")  # type: ignore[arg-type]
        with open(self.path, "rb") as file:
            self.assertEqual(file.read(), b"old")
        self.assertEqual(sorted(os.listdir(self.directory)), ["chat.state"])

    def test_a_written_state_reads_back(self) -> None:
        state = ChatState(1, (b"JOIN 1 alice\n",), (SessionRecord(b"alice", b"tok", STOPPED_AT + 5),), STOPPED_AT)
        write_atomically(self.path, encode(state))
        restored, _ = self.restore()
        self.assertTrue(restored)
        self.assertIsNotNone(self.server.factory.chat.sessions.by_token(b"tok"))


class OtherChatTests(SynchronousTestCase):
    def test_a_chat_not_kept_in_memory_is_left_alone_with_a_warning(self) -> None:
        with capturedLogs() as events:
            self.assertIsNone(keep_state(object(), "chat.state"))
        [event] = [event for event in events if event.get("log_namespace") == "hbchat.server.state"]
        self.assertEqual(event["log_level"], LogLevel.warn)
        self.assertIn("is ignored", str(event["log_format"]))


class OptionTests(SynchronousTestCase):
    def parse(self, *arguments: str) -> ServerOptions:
        options = ServerOptions()
        options.parseOptions(list(arguments))
        return options

    def test_off_by_default(self) -> None:
        self.assertIsNone(self.parse()["state"])

    def test_a_relative_path_is_made_absolute_at_once(self) -> None:
        # twistd may change directory (--rundir) between the start and the stop.
        self.assertEqual(self.parse("--state", "chat.state")["state"], os.path.abspath("chat.state"))

    def test_a_directory_is_not_a_file_name(self) -> None:
        self.assertRaises(UsageError, self.parse, "--state", "/var/lib/hbchat/")
