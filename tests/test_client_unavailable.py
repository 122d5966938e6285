"""
``ERR 503 cluster unavailable: <VERB> not handled`` seen by the client (hbchat.client.unavailable,
errors, outbox): the refused line is kept and sent again after a jittered wait, on the same
connection; nothing lost, nothing doubled.  On a fake clock, against a scripted server.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from hbchat.client.factory import ChatClientFactory
from hbchat.client.protocol import ChatClientProtocol
from hbchat.client.unavailable import FIRST_WAIT, MAX_WAIT, refused_verb, retry_wait
from tests.test_client import RecordingObserver
from tests.test_client_integration import ClientTestCase

HELLO = b"HELLO hbchat/1 ping=30 timeout=90 rate=0 burst=1\n"


def unavailable(verb: str) -> bytes:
    return f"ERR 503 cluster unavailable: {verb} not handled\n".encode()


class WordsTests(SynchronousTestCase):
    def test_the_verb_is_read_from_the_text(self) -> None:
        for verb in ("NICK", "RESUME", "SAY", "TELL"):
            self.assertEqual(refused_verb(f"cluster unavailable: {verb} not handled"), verb)

    def test_other_503s_are_not_this_one(self) -> None:
        for text in ("server full", "cluster unavailable: WHO not handled", "too many requests: SAY not handled"):
            self.assertIsNone(refused_verb(text))

    def test_the_wait_doubles_and_is_capped(self) -> None:
        rng = random.Random(1)
        for refusals in range(1, 12):
            ceiling = min(MAX_WAIT, FIRST_WAIT * 2 ** (refusals - 1))
            for _ in range(20):
                self.assertTrue(ceiling / 2 <= retry_wait(refusals, rng) <= ceiling)

    def test_the_wait_is_jittered(self) -> None:
        rng = random.Random(2)
        self.assertGreater(len({retry_wait(3, rng) for _ in range(20)}), 15)


class Scripted(SynchronousTestCase):
    """A client on a fake clock, its connection a StringTransport the test reads and answers."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.observer = RecordingObserver()
        self.factory = ChatClientFactory("ida", self.observer, clock=self.clock, rng=random.Random(4))
        self.transport = StringTransport()
        self.protocol: ChatClientProtocol = self.factory.buildProtocol(None)
        self.protocol.makeConnection(self.transport)
        self.protocol.dataReceived(HELLO)

    def sent(self) -> list[bytes]:
        """Lines the client sent since the last call (without the plain-TCP probe's empty lines)."""
        lines = [line for line in self.transport.value().split(b"\n")[:-1] if line]
        self.transport.clear()
        return lines

    def server(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def ready(self) -> None:
        self.assertEqual(self.sent(), [b"NICK ida"])
        self.server(b"WELCOME ida tok 0\nJOIN 1 ida\n")

    def wait(self) -> None:
        """Past any hold the outbox may be in."""
        self.clock.advance(MAX_WAIT)


class SayTests(Scripted):
    def test_a_refused_say_is_sent_again_after_a_wait(self) -> None:
        self.ready()
        self.factory.say("hello")
        self.assertEqual(self.sent(), [b"SAY hello"])
        self.server(unavailable("SAY"))
        self.assertEqual(self.sent(), [])
        self.wait()
        self.assertEqual(self.sent(), [b"SAY hello"])
        self.server(b"MSG 2 ida hello\n")
        self.assertTrue(self.factory.session.idle)
        self.assertEqual(self.observer.messages, [(2, "ida", "hello")])

    def test_the_connection_stays(self) -> None:
        self.ready()
        self.factory.say("hello")
        self.server(unavailable("SAY"))
        self.assertFalse(self.transport.disconnecting)
        self.assertTrue(self.factory.connected)

    def test_the_user_is_told_once_per_outage(self) -> None:
        self.ready()
        for text in ("a", "b", "c"):
            self.factory.say(text)
        self.server(unavailable("SAY") * 3)
        told = [event for event in self.observer.events if event.startswith("error 503")]
        self.assertEqual(len(told), 1, self.observer.events)
        self.assertIn("cluster unavailable: SAY not handled: kept, sent again in", told[0])

    def test_several_refused_go_again_in_order_one_at_a_time(self) -> None:
        self.ready()
        for text in ("a", "b", "c"):
            self.factory.say(text)
        self.assertEqual(self.sent(), [b"SAY a", b"SAY b", b"SAY c"])
        self.server(unavailable("SAY") * 3)
        self.wait()
        self.assertEqual(self.sent(), [b"SAY a"])
        self.server(b"MSG 2 ida a\n")
        self.assertEqual(self.sent(), [b"SAY b"])
        self.server(b"MSG 3 ida b\n")
        self.assertEqual(self.sent(), [b"SAY c"])
        self.server(b"MSG 4 ida c\n")
        self.assertTrue(self.factory.session.idle)

    def test_only_the_refused_ones_go_again(self) -> None:
        self.ready()
        self.factory.say("a")
        self.factory.say("b")
        self.sent()
        self.server(b"MSG 2 ida a\n" + unavailable("SAY"))
        self.wait()
        self.assertEqual(self.sent(), [b"SAY b"])

    def test_lines_typed_while_held_follow_the_refused_ones(self) -> None:
        self.ready()
        self.factory.say("a")
        self.sent()
        self.server(unavailable("SAY"))
        self.factory.say("b")
        self.assertEqual(self.sent(), [])
        self.wait()
        self.assertEqual(self.sent(), [b"SAY a"])
        self.server(b"MSG 2 ida a\n")
        self.assertEqual(self.sent(), [b"SAY b"])

    def test_the_wait_grows_while_refusals_go_on_and_starts_over_after_a_success(self) -> None:
        self.ready()
        self.factory.say("a")
        self.sent()
        waits = []
        for _ in range(5):
            self.server(unavailable("SAY"))
            waits.append(self.factory.outbox._heldUntil - self.clock.seconds())
            self.wait()
            self.assertEqual(self.sent(), [b"SAY a"])
        self.assertGreater(waits[-1], waits[0] * 4)
        self.server(b"MSG 2 ida a\n")
        self.assertEqual(self.factory.outbox.unavailable, 0)

    def test_a_new_connection_is_held_afresh(self) -> None:
        self.ready()
        self.factory.say("a")
        self.sent()
        self.server(unavailable("SAY"))
        self.protocol.connectionLost()
        self.factory.connecting()
        self.transport = StringTransport()
        self.protocol = self.factory.buildProtocol(None)
        self.protocol.makeConnection(self.transport)
        self.server(HELLO)
        self.assertEqual(self.sent(), [b"RESUME tok 1"])
        self.server(b"WELCOME ida tok 1\nRESUMED 0 complete\n")
        self.assertEqual(self.sent(), [b"SAY a"])
        self.server(unavailable("SAY"))
        self.assertEqual(self.sent(), [])
        self.wait()
        self.assertEqual(self.sent(), [b"SAY a"])


class TellTests(Scripted):
    def test_a_tell_is_followed_by_a_ping_and_the_next_waits_for_its_pong(self) -> None:
        self.ready()
        self.factory.tell("bob", "one")
        self.factory.tell("bob", "two")
        self.assertEqual(self.sent(), [b"TELL bob one", b"PING told"])
        self.server(b"PONG told\n")
        self.assertEqual(self.sent(), [b"TELL bob two", b"PING told"])
        self.server(b"PONG told\n")
        self.assertTrue(self.factory.session.idle)

    def test_a_refused_tell_is_sent_again_once(self) -> None:
        self.ready()
        self.factory.tell("bob", "one")
        self.factory.tell("bob", "two")
        self.sent()
        self.server(unavailable("TELL") + b"PONG told\n")
        self.assertEqual(self.sent(), [])
        self.wait()
        self.assertEqual(self.sent(), [b"TELL bob one", b"PING told"])
        self.server(b"PONG told\n")
        self.assertEqual(self.sent(), [b"TELL bob two", b"PING told"])
        self.server(b"PONG told\n")
        self.assertTrue(self.factory.session.idle)

    def test_a_tell_to_nobody_is_not_sent_again(self) -> None:
        self.ready()
        self.factory.tell("nobody", "one")
        self.factory.tell("bob", "two")
        self.sent()
        self.server(b"ERR 406 no such nick\n")
        self.assertEqual(self.sent(), [b"TELL bob two", b"PING told"])
        self.server(b"PONG told\n")
        self.wait()
        self.assertEqual(self.sent(), [])

    def test_says_are_not_held_up_by_a_tell_in_flight(self) -> None:
        self.ready()
        self.factory.tell("bob", "one")
        self.factory.say("hello")
        self.assertEqual(self.sent(), [b"TELL bob one", b"PING told", b"SAY hello"])

    def test_a_refused_ping_after_a_tell_is_asked_again(self) -> None:
        self.ready()
        self.factory.tell("bob", "one")
        self.sent()
        self.server(b"ERR 429 too many requests: PING not handled\n")
        self.clock.advance(1.0)
        self.assertEqual(self.sent(), [b"PING told"])


class LoginTests(Scripted):
    def test_a_refused_nick_is_sent_again_on_the_same_connection(self) -> None:
        self.assertEqual(self.sent(), [b"NICK ida"])
        self.server(unavailable("NICK"))
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(self.sent(), [])
        self.wait()
        self.assertEqual(self.sent(), [b"NICK ida"])
        self.server(b"WELCOME ida tok 0\nJOIN 1 ida\n")
        self.assertTrue(self.factory.connected)
        self.assertEqual(self.observer.events.count("registered ida resumed=False"), 1)

    def test_a_refused_resume_is_sent_again(self) -> None:
        self.ready()
        self.protocol.connectionLost()
        self.factory.connecting()  # the next attempt, as the connector starts it
        self.transport = StringTransport()
        self.protocol = self.factory.buildProtocol(None)
        self.protocol.makeConnection(self.transport)
        self.server(HELLO)
        self.assertEqual(self.sent(), [b"RESUME tok 1"])
        self.server(unavailable("RESUME"))
        self.wait()
        self.assertEqual(self.sent(), [b"RESUME tok 1"])
        self.server(b"WELCOME ida tok 1\nRESUMED 0 complete\n")
        self.assertTrue(self.factory.connected)

    def test_nothing_is_sent_again_on_a_connection_that_ended(self) -> None:
        self.sent()
        self.server(unavailable("NICK"))
        self.protocol.connectionLost()
        self.factory.stopTrying()
        self.wait()
        self.assertEqual(self.sent(), [])


class RealServerTellTests(ClientTestCase):
    """The PING after each TELL, against a real server on loopback: every TELL arrives once, in order."""

    @inlineCallbacks
    def test_tells_arrive_once_each_in_order(self) -> Any:
        _, port = self.startServer()
        ida, idaSaw = self.startClient("ida", port, seed=1)
        _, bobSaw = self.startClient("bob", port, seed=2)
        yield self.waitRegistered(idaSaw)
        yield self.waitRegistered(bobSaw)
        for n in range(5):
            ida.tell("bob", f"secret {n}")
        expected = [f"private ida secret {n}" for n in range(5)]
        yield self.waitFor(
            lambda: [e for e in bobSaw.events if e.startswith("private")] == expected, "bob's five PRIVs", bobSaw
        )
        # The server answers a connection's lines in order: by the echo of a SAY sent after
        # the TELLs, the PONG after the last TELL has come.
        ida.say("done")
        yield self.waitOwn(idaSaw, "done")
        self.assertTrue(ida.session.idle, ida.session.tellInFlight)
        self.assertEqual([e for e in idaSaw.events if e.startswith("error")], [], idaSaw.transcript())
