"""
``twistd hbchat --state FILE`` as real processes: a graceful restart (SIGTERM, start again)
that the real client rides through with ``RESUMED <n> complete``, nothing lost, no history gap.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
from typing import Any, cast

from twisted.internet.defer import inlineCallbacks

from hbchat.server.statefile import ChatState, decode, encode
from tests.test_client_integration import ServerProcessTestCase
from tests.test_twistd import TwistdTestCase, freePort


class StateRestartTests(ServerProcessTestCase):
    def setUp(self) -> None:
        super().setUp()
        directory = os.path.abspath(str(self.mktemp()))
        os.makedirs(directory)
        self.statePath = os.path.join(directory, "chat.state")
        self.SERVER_OPTIONS = cast(Any, (*ServerProcessTestCase.SERVER_OPTIONS, "--state", self.statePath))

    @inlineCallbacks
    def test_a_graceful_restart_is_resumed_complete(self) -> Any:
        """
        alice and bob chat; SIGTERM; the state file is written (mode 0600); a new server reads
        it: both clients RESUME complete, the lines alice typed while no server was there are
        delivered once, after the old ones, with seqs that go on, and nobody hears of a gap.
        """
        port = freePort()
        first = yield self.startServerProcess(port)
        aliceClient, alice = self.startClient("alice", port, seed=1)
        bobClient, bob = self.startClient("bob", port, seed=2)
        yield self.waitRegistered(alice)
        yield self.waitRegistered(bob)
        aliceClient.say("before the restart")
        yield self.waitOwn(alice, "before the restart")
        yield self.waitFor(lambda: "before the restart" in bob.texts("alice"), "bob hearing alice", bob)
        seqBefore = aliceClient.session.last_seq

        first.sendSignal(signal.SIGTERM)
        yield self.waitFor(lambda: bool(alice.disconnects), "alice noticing the shutdown", alice)
        aliceClient.say("said while down")
        yield self.waitEnded(first, f"the first twistd exiting after SIGTERM\n{first.output()}")
        self.assertIn("chat saved to", first.output())
        self.assertEqual(stat.S_IMODE(os.stat(self.statePath).st_mode), 0o600)
        with open(self.statePath, "rb") as file:
            saved = decode(file.read())
        self.assertEqual(saved.seq, seqBefore)
        self.assertEqual({record.nick for record in saved.sessions}, {b"alice", b"bob"})

        second = yield self.startServerProcess(port)
        self.assertIn("chat restored from", second.output())
        yield self.waitOwn(alice, "said while down")
        # Removed once the server serves (its reactor running: it has answered alice by now).
        self.assertFalse(os.path.exists(self.statePath), "the state file is used once")
        yield self.waitFor(lambda: "said while down" in bob.texts("alice"), "bob hearing alice again", bob)
        bobClient.say("welcome back")
        yield self.waitFor(lambda: "welcome back" in alice.texts("bob"), "alice hearing bob", alice)

        for observer in (alice, bob):
            self.assertEqual(observer.count("resumed "), 1, observer.transcript())
            self.assertTrue(
                any(re.fullmatch(r"resumed \d+ complete", event) for event in observer.events), observer.transcript()
            )
            self.assertEqual(observer.count("history lost"), 0, observer.transcript())
            self.assertEqual(observer.count("error "), 0, observer.transcript())
            seqs = [seq for seq, _, _, _ in observer.messages]
            self.assertEqual(seqs, sorted(set(seqs)), observer.transcript())
        self.assertEqual(alice.texts("alice"), ["before the restart", "said while down"], alice.transcript())
        self.assertEqual(bob.texts("alice"), ["before the restart", "said while down"], bob.transcript())
        [downSeq] = [seq for seq, _, text, _ in alice.messages if text == "said while down"]
        self.assertGreater(downSeq, seqBefore)
        self.assertNotIn("Traceback", first.output() + second.output())

    @inlineCallbacks
    def test_a_damaged_state_file_is_a_fresh_chat(self) -> Any:
        """A state file that is not one: one error line, and the server serves a fresh chat."""
        with open(self.statePath, "wb") as file:
            file.write(b"this is not a state file")
        port = freePort()
        server = yield self.startServerProcess(port)
        factory, alice = self.startClient("alice", port)
        yield self.waitRegistered(alice)
        self.assertEqual(factory.session.last_seq, 1)
        errors = [line for line in server.output().splitlines() if "state file" in line and "unusable" in line]
        self.assertEqual(len(errors), 1, server.output())
        self.assertNotIn("Traceback", server.output())


class FailedStartTests(TwistdTestCase):
    def test_a_start_that_fails_leaves_the_state_file_for_the_next(self) -> None:
        """The saved chat is removed once the server serves; a port already in use is exit 1, the file kept."""
        directory = self.freshDirectory()
        path = os.path.join(directory, "chat.state")
        with open(path, "wb") as file:
            file.write(encode(ChatState(seq=1, history=(b"JOIN 1 alice\n",), sessions=(), saved_at=0.0)))
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = self.runTwistd(
            "-n", "--pidfile=", "hbchat", "--listen", f"tcp:{port}:interface=127.0.0.1", "--state", path
        )
        self.assertNotEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertTrue(os.path.exists(path), result.stdout + result.stderr)
        with open(path, "rb") as file:
            self.assertEqual(decode(file.read()).seq, 1)
