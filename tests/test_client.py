"""The client: backoff, resume without loss or duplicates, and dead-server detection."""

from __future__ import annotations

import random
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from hbchat.client.backoff import Backoff
from hbchat.client.connector import EndpointConnector
from hbchat.client.factory import ChatClientFactory
from hbchat.client.outbox import pace_for
from hbchat.client.policy import Diagnosis, PermanentConnectionError
from hbchat.client.session import ClientSession, OutboxFullError
from hbchat.interfaces import IChatObserver
from hbchat.ratelimit import Bucket
from hbchat.server.comeback import comeback_delay
from hbchat.testing import FakeNetwork, FakePeer, FakeServer


@implementer(IChatObserver)
class RecordingObserver:
    """Keeps everything the client reports, as short strings."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.messages: list[tuple[int, str, str]] = []
        self.delays: list[float] = []
        self.retryReasons: list[str] = []

    def registered(self, nick: str, resumed: bool) -> None:
        self.events.append(f"registered {nick} resumed={resumed}")

    def message(self, seq: int, nick: str, text: str, own: bool) -> None:
        self.messages.append((seq, nick, text))

    def private(self, sender: str, text: str) -> None:
        self.events.append(f"private {sender} {text}")

    def joined(self, seq: int, nick: str) -> None:
        self.events.append(f"joined {nick}")

    def left(self, seq: int, nick: str, reason: str) -> None:
        self.events.append(f"left {nick} {reason}")

    def users(self, nicks: list[str]) -> None:
        self.events.append("users " + " ".join(nicks))

    def resumed(self, count: int, complete: bool, missing: int | None) -> None:
        self.events.append(f"resumed {count} complete" if complete else f"resumed {count} partial missing={missing}")

    def historyLost(self) -> None:
        self.events.append("history lost")

    def serverError(self, code: int, text: str) -> None:
        self.events.append(f"error {code} {text}")

    def disconnected(self, reason: str) -> None:
        self.events.append(f"disconnected: {reason}")

    def reconnecting(self, delay: float, attempt: int, reason: str) -> None:
        self.delays.append(delay)
        self.retryReasons.append(reason)

    def gaveUp(self, reason: str) -> None:
        self.events.append(f"gave up: {reason}")

    def rtt(self, seconds: float) -> None:
        pass


class BackoffTests(SynchronousTestCase):
    """The reconnect delays of hbchat.backoff, as pure arithmetic (no reactor)."""

    def test_the_first_retry_is_spread_over_one_and_a_half_seconds(self) -> None:
        backoff = Backoff()
        self.assertEqual((backoff.floor(0, 0), backoff.ceiling(0, 0)), (0, 1.5))

    def test_later_retries_wait_half_to_all_of_a_second_while_the_outage_is_young(self) -> None:
        backoff = Backoff()
        for attempt, age in [(1, 0.0), (1, 0.7), (2, 1.5), (5, 2.0)]:
            self.assertEqual((backoff.floor(attempt, age), backoff.ceiling(attempt, age)), (0.5, 1.0))

    def test_the_window_grows_with_the_age_of_the_outage_not_with_the_count_of_refusals(self) -> None:
        backoff = Backoff()
        self.assertEqual([backoff.ceiling(1, age) for age in [4, 10, 30, 59, 60, 1000]], [2, 5, 15, 29.5, 30, 30])
        # Ten quick refusals in the first second do not lengthen the wait.
        self.assertEqual(backoff.ceiling(10, 1.0), 1.0)

    def test_the_cap_bounds_every_delay_the_first_included(self) -> None:
        backoff = Backoff(cap=1.2)
        self.assertEqual(backoff.ceiling(0, 0), 1.2)
        self.assertEqual(backoff.ceiling(3, 500), 1.2)

    def test_delays_are_drawn_between_floor_and_ceiling(self) -> None:
        backoff, rng = Backoff(), random.Random(1)
        for attempt in range(40):
            for age in [0.0, 0.5, 3.0, 17.0, 100.0, 1e9]:
                for _ in range(50):
                    delay = backoff.delay(attempt, age, rng)
                    self.assertTrue(backoff.floor(attempt, age) <= delay <= backoff.ceiling(attempt, age))
                    self.assertTrue(0 <= delay <= 30)

    def test_delays_spread_evenly_over_their_window(self) -> None:
        backoff, rng = Backoff(), random.Random(7)
        draws = [backoff.delay(3, 16.0, rng) for _ in range(10_000)]  # window [4, 8]
        tenths = [0] * 10
        for delay in draws:
            tenths[min(9, int((delay - 4) / 4 * 10))] += 1
        for count in tenths:
            self.assertTrue(800 <= count <= 1200, tenths)

    def test_a_crowd_dropped_at_once_retries_at_a_flat_rate_until_the_server_returns(self) -> None:
        # 300 clients lose the server at 0 and it is back at 0.5 s: their attempts per
        # 100 ms, from the loss until the last is back, peak at under twice their mean.
        backoff, rng = Backoff(), random.Random(3)
        attempts, back = [], []
        for _ in range(300):
            at, attempt = 0.0, 0
            while True:
                at += backoff.delay(attempt, at, rng)
                attempt += 1
                attempts.append(at)
                if at >= 0.5:
                    back.append(at)
                    break
        bins = [0] * (int(max(back) / 0.1) + 1)
        for at in attempts:
            bins[int(at / 0.1)] += 1
        self.assertLess(max(bins), 2 * len(attempts) / len(bins))
        self.assertLess(max(back), 2.0)

    def test_invalid_settings_are_refused(self) -> None:
        self.assertRaises(ValueError, Backoff, base=0)
        self.assertRaises(ValueError, Backoff, base=5, cap=1)
        self.assertRaises(ValueError, Backoff, growth=0)
        self.assertRaises(ValueError, Backoff, spread=0)


class ClientSessionTests(SynchronousTestCase):
    def test_outbox_is_bounded_and_says_so(self) -> None:
        session = ClientSession(b"me", outbox_limit=2)
        session.queue(b"SAY 1")
        session.queue(b"SAY 2")
        self.assertRaises(OutboxFullError, session.queue, b"SAY 3")

    def test_echo_of_the_oldest_unechoed_line_marks_it_delivered(self) -> None:
        session = ClientSession(b"me")
        session.sending(b"SAY a")
        session.sending(b"SAY b")
        self.assertFalse(session.echoed(b"other", b"a"))
        self.assertTrue(session.echoed(b"me", b"a"))
        self.assertEqual(list(session.unechoed), [b"b"])

    def test_old_events_are_not_new(self) -> None:
        session = ClientSession(b"me")
        session.registered(b"me", b"t", 5)
        self.assertFalse(session.is_new(5))
        self.assertTrue(session.is_new(6))
        self.assertFalse(session.is_new(6))

    def test_resend_order_is_unechoed_then_outbox(self) -> None:
        session = ClientSession(b"me")
        session.sending(b"SAY lost")
        session.queue(b"TELL x typed")
        self.assertEqual(session.to_resend(), [b"SAY lost", b"TELL x typed"])
        self.assertTrue(session.idle)


class ClientTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer(ping=5, timeout=15, grace=60, history=100)
        self.network = FakeNetwork(self.server)
        self.observer = RecordingObserver()
        self.factory = self.makeClient("carol", self.observer)

    def makeClient(self, nick: str, observer: RecordingObserver, **settings: object) -> ChatClientFactory:
        factory = ChatClientFactory(nick, observer, clock=self.server.clock, rng=random.Random(3), **settings)  # type: ignore[arg-type]
        EndpointConnector(self.network, factory).connect()
        self.network.flush()
        return factory

    def ownTexts(self, observer: RecordingObserver, nick: str = "carol") -> list[str]:
        return [text for _, who, text in observer.messages if who == nick]


class ClientRegistrationTests(ClientTestCase):
    def test_observer_provides_the_interface(self) -> None:
        self.assertTrue(verifyObject(IChatObserver, self.observer))

    def test_client_registers_and_sees_its_own_join(self) -> None:
        self.assertEqual(self.observer.events[:2], ["registered carol resumed=False", "joined carol"])
        self.assertTrue(self.factory.connected)

    def test_said_lines_come_back_as_own_messages(self) -> None:
        self.factory.say("hello")
        self.network.flush()
        self.assertEqual(self.observer.messages, [(2, "carol", "hello")])
        self.assertTrue(self.factory.session.idle)

    def test_who_and_tell(self) -> None:
        peer = self.server.registered("dave")
        self.factory.tell("dave", "psst")
        self.assertTrue(self.factory.who())
        self.network.flush()
        self.assertIn(b"PRIV carol psst", peer.received())
        self.assertIn("users carol dave", self.observer.events)

    def test_client_answers_server_pings(self) -> None:
        self.network.advance(60)
        self.assertTrue(self.factory.connected)
        self.assertNotIn("left carol timeout", self.observer.events)

    def test_messages_with_line_breaks_or_empty_are_refused(self) -> None:
        self.assertRaises(ValueError, self.factory.say, "two\nlines")
        self.assertRaises(ValueError, self.factory.say, "")
        self.assertRaises(ValueError, self.factory.say, "x" * 5000)

    def test_nick_in_use_gives_up_with_a_clear_reason(self) -> None:
        observer = RecordingObserver()
        self.makeClient("carol", observer)
        self.assertEqual(observer.events[-1], "gave up: the server refused us: ERR 433 nick in use")


class ResumeTests(ClientTestCase):
    def test_a_cut_connection_is_resumed_and_missed_messages_replayed_once(self) -> None:
        dave = self.server.registered("dave")
        dave.sendLine("SAY before")
        self.network.flush()
        self.network.cut()
        dave.sendLine("SAY during")
        self.network.advance(2)  # the backoff's first delay is below 1 s
        self.assertIn("resumed 1 complete", self.observer.events)
        self.assertEqual([text for _, _, text in self.observer.messages], ["before", "during"])

    def test_lines_lost_in_flight_are_sent_again_and_delivered_ones_are_not(self) -> None:
        self.factory.say("one")
        self.network.flush()
        self.factory.say("two")  # written, never delivered: the cut loses it
        self.network.cut()
        self.factory.say("three")  # typed while disconnected
        self.network.advance(2)
        self.network.flush()
        self.assertEqual(self.ownTexts(self.observer), ["one", "two", "three"])
        history = self.server.factory.chat.history.since(0)[0]
        self.assertEqual([line for line in history if line.startswith(b"MSG")].count(b"MSG 2 carol one\n"), 1)
        self.assertTrue(self.factory.session.idle)

    def test_lines_that_arrived_before_the_cut_are_not_sent_twice(self) -> None:
        self.factory.say("one")
        self.factory.say("two")
        # Deliver to the server but cut before the echoes come back.
        for pump in self.network.pumps:
            pump.serverIO.bufferReceived(pump.clientIO.getOutBuffer())
        self.network.cut()
        self.network.advance(2)
        says = [line for line in self.server.factory.chat.history.since(0)[0] if line.startswith(b"MSG")]
        self.assertEqual(says, [b"MSG 2 carol one\n", b"MSG 3 carol two\n"])
        self.assertEqual(self.ownTexts(self.observer), ["one", "two"])

    def test_unknown_session_registers_afresh_and_says_history_was_lost(self) -> None:
        self.network.cut()
        self.server.advance(61)  # grace expires while we are away
        self.network.advance(2)
        self.assertIn("history lost", self.observer.events)
        self.assertEqual(self.observer.events[-2:], ["registered carol resumed=False", "joined carol"])

    def test_partial_replay_is_reported(self) -> None:
        server = FakeServer(history=2, grace=60)
        self.network = FakeNetwork(server)
        self.server = server
        observer = RecordingObserver()
        self.makeClient("erin", observer)
        dave = server.registered("dave")
        self.network.cut()
        for n in range(5):
            dave.sendLine(f"SAY {n}")
        self.network.advance(2)
        # JOIN dave (2), our LEFT (3) and MSGs 0 to 2 (4 to 6) fell out of the 2-event history.
        self.assertIn("resumed 2 partial missing=5", observer.events)

    def test_our_own_leave_and_return_are_not_reported_on_resume(self) -> None:
        dave = self.server.registered("dave")
        self.network.cut()
        dave.sendLine("SAY during")
        self.network.advance(2)
        self.assertIn("resumed 1 complete", self.observer.events)  # JOIN dave, our LEFT, MSG dave: 1 message
        resumed = self.observer.events.index("registered carol resumed=True")
        self.assertNotIn("left carol error", self.observer.events)
        self.assertNotIn("joined carol", self.observer.events[resumed:])
        self.assertEqual(self.observer.messages[-1][1:], ("dave", "during"))

    def test_others_leaving_and_joining_during_our_absence_are_still_reported(self) -> None:
        self.network.cut()
        self.server.registered("dave").sendLine("QUIT")
        self.network.advance(2)
        self.assertIn("joined dave", self.observer.events)
        self.assertIn("left dave quit", self.observer.events)

    def test_events_already_seen_are_not_reported_again(self) -> None:
        protocol = self.factory.protocolInstance
        assert protocol is not None
        protocol.dataReceived(b"MSG 7 dave hi\nJOIN 7 dave\nMSG 6 dave old\nMSG 8 dave new\n")
        self.assertEqual(self.observer.messages, [(7, "dave", "hi"), (8, "dave", "new")])


class ReconnectTests(ClientTestCase):
    def test_a_silent_server_is_detected_within_its_timeout(self) -> None:
        # Freeze: nothing is flushed any more, so neither side hears the other.
        self.server.clock.pump([1] * 14)
        self.assertTrue(self.factory.connected)
        self.server.clock.pump([1])
        self.network.flush()  # the fake network reports the abort on its next pump
        self.assertIn("disconnected: the server was silent for 15.0s", self.observer.events)

    def test_backoff_grows_while_the_server_is_unreachable_and_resets_after_welcome(self) -> None:
        seen: list[tuple[float, float, int]] = []
        record = self.observer.reconnecting

        def reconnecting(delay: float, attempt: int, reason: str) -> None:
            seen.append((self.factory.timer.seconds(), delay, attempt))
            record(delay, attempt, reason)

        self.observer.reconnecting = reconnecting  # type: ignore[method-assign]
        self.network.reachable = False
        self.network.cut()
        for _ in range(6):
            self.network.advance(31)
        backoff, began = Backoff(), seen[0][0]
        for at, delay, attempt in seen:
            age = at - began
            self.assertTrue(backoff.floor(attempt - 1, age) <= delay <= backoff.ceiling(attempt - 1, age), (at, delay))
        self.assertGreater(seen[-1][1], 5.0)  # over 150 s into the outage: at least 5 s between attempts
        self.assertGreaterEqual(self.factory.retries, 6)
        self.network.reachable = True
        self.network.advance(31)
        self.assertEqual(self.factory.retries, 0)

    def test_a_server_that_accepts_and_drops_does_not_reset_the_backoff(self) -> None:
        class Dropper:
            def __init__(self, network: FakeNetwork) -> None:
                self.network = network

            def connect(self, factory: ChatClientFactory) -> object:
                result = self.network.connect(factory)
                self.network.cut()
                return result

        factory = ChatClientFactory("frank", self.observer, clock=self.server.clock, rng=random.Random(5))
        EndpointConnector(Dropper(self.network), factory).connect()  # type: ignore[arg-type]
        for _ in range(5):
            self.server.advance(31)
        self.assertGreaterEqual(factory.retries, 5)

    def test_retry_hint_from_a_shutdown_bounds_the_next_delay(self) -> None:
        self.server.factory.config = self.server.factory.config.__class__(retry_hint=0.5, ping=5, timeout=15)
        self.server.factory.shutdown()
        self.network.flush()
        self.assertEqual(len(self.observer.delays), 1)
        self.assertLessEqual(self.observer.delays[0], 0.5)

    def test_the_moment_a_shutdown_names_is_followed_exactly(self) -> None:
        self.server.factory.config = self.server.factory.config.__class__(retry_hint=4, ping=5, timeout=15)
        self.server.factory.drain.rng = random.Random(11)
        expected = round(comeback_delay(0, 1, 0.0, 0.0, 4, random.Random(11).random()), 3)
        self.server.factory.shutdown()
        self.network.flush()
        self.assertEqual(self.observer.delays, [expected])
        self.assertTrue(0.5 <= expected <= 4)

    def test_max_retries_gives_up_with_a_clear_message(self) -> None:
        observer = RecordingObserver()
        self.network.reachable = False
        factory = ChatClientFactory("gina", observer, clock=self.server.clock, max_retries=3)
        EndpointConnector(self.network, factory).connect()
        for _ in range(10):
            self.server.advance(31)
        self.assertEqual(len(observer.delays), 3)
        self.assertTrue(observer.events[-1].startswith("gave up: could not connect"), observer.events)
        self.assertIn("after 3 retries", observer.events[-1])

    def test_quit_stops_reconnecting(self) -> None:
        self.factory.quit("bye all")
        self.network.flush()
        self.assertIn("gave up: you quit", self.observer.events)
        self.server.advance(100)
        self.assertEqual(self.observer.delays, [])

    def test_replaced_session_stops_reconnecting(self) -> None:
        thief: FakePeer = self.server.connect()
        token = self.factory.session.token
        assert token is not None
        thief.sendLine(b"RESUME " + token + b" 0")
        self.network.flush()
        self.assertIn("gave up: another connection resumed our session", self.observer.events)


class PermanentFailureTests(ClientTestCase):
    """Failures that reconnecting cannot cure end the client at once, in one line."""

    def connectUngreeted(self, diagnose: Any = None) -> tuple[RecordingObserver, ChatClientFactory]:
        """A client whose connection is still in its (TLS) handshake: no HELLO yet."""
        observer = RecordingObserver()
        factory = ChatClientFactory("hana", observer, clock=self.server.clock, rng=random.Random(3), diagnose=diagnose)
        EndpointConnector(self.network, factory).connect()  # nothing flushed: no HELLO
        return observer, factory

    def test_a_permanent_error_on_a_connection_gives_up_without_reconnecting(self) -> None:
        observer, _ = self.connectUngreeted()
        self.network.cut(PermanentConnectionError("TLS: the certificate is bad"))
        self.server.advance(60)
        self.assertEqual(observer.events[-1], "gave up: TLS: the certificate is bad")
        self.assertEqual(observer.delays, [])
        self.assertNotIn("disconnected", " ".join(observer.events))

    def test_a_permanent_error_while_connecting_gives_up_without_reconnecting(self) -> None:
        class Refusing:
            def connect(self, factory: IProtocolFactory) -> Deferred[object]:
                return fail(PermanentConnectionError("TLS: nobody to trust"))

        observer = RecordingObserver()
        factory = ChatClientFactory("hana", observer, clock=self.server.clock)
        EndpointConnector(Refusing(), factory).connect()  # type: ignore[arg-type]
        self.server.advance(60)
        self.assertEqual(observer.events, ["gave up: TLS: nobody to trust"])
        self.assertEqual(observer.delays, [])

    def test_a_final_diagnosis_gives_up_with_its_text(self) -> None:
        observer, _ = self.connectUngreeted(lambda reason: Diagnosis("the server refused our certificate", final=True))
        self.network.cut()
        self.server.advance(60)
        self.assertEqual(observer.events[-1], "gave up: the server refused our certificate")
        self.assertEqual(observer.delays, [])

    def test_a_passing_diagnosis_words_the_loss_and_reconnects(self) -> None:
        self.factory.diagnose = lambda reason: Diagnosis("TLS: wrong version number", final=False)
        self.network.cut()
        self.assertIn("disconnected: connection lost: TLS: wrong version number", self.observer.events)
        self.assertEqual(len(self.observer.delays), 1)

    def test_a_connection_that_was_greeted_is_never_given_up_on(self) -> None:
        # It spoke TLS with a certificate we trusted: a TLS error later (a corrupted record)
        # is not the server's certificate or a port without TLS.
        self.factory.diagnose = lambda reason: Diagnosis("TLS: does not speak TLS", final=True)
        self.network.cut()
        self.assertFalse(any(event.startswith("gave up") for event in self.observer.events), self.observer.events)
        self.assertEqual(len(self.observer.delays), 1)


class InterruptedRegistrationTests(ClientTestCase):
    def setUp(self) -> None:
        self.server = FakeServer(ping=5, timeout=15, grace=60, history=100)
        self.network = FakeNetwork(self.server)
        self.observer = RecordingObserver()
        self.factory = ChatClientFactory("carol", self.observer, clock=self.server.clock, rng=random.Random(3))
        EndpointConnector(self.network, self.factory).connect()
        pump = self.network.pumps[0]
        pump.pump()  # HELLO reaches the client, which answers NICK
        pump.pump()  # NICK reaches the server; its WELCOME is still in flight
        self.network.cut()

    def test_a_nick_held_by_our_own_lost_registration_is_waited_for_not_given_up(self) -> None:
        self.network.advance(30)
        self.assertFalse(any(event.startswith("gave up") for event in self.observer.events), self.observer.events)
        self.assertIn(
            "disconnected: the nick is still held, probably by our own interrupted registration", self.observer.events
        )

    def test_registration_succeeds_once_the_ghost_session_expires(self) -> None:
        self.network.advance(120)
        self.assertIn("registered carol resumed=False", self.observer.events)
        self.assertTrue(self.factory.connected)


class PartialReplayTests(SynchronousTestCase):
    def test_echo_of_a_later_line_proves_the_earlier_ones_were_delivered(self) -> None:
        session = ClientSession(b"me")
        for text in [b"a", b"b", b"c"]:
            session.sending(b"SAY " + text)
        self.assertTrue(session.echoed(b"me", b"b"))
        self.assertEqual(list(session.unechoed), [b"c"])

    def test_a_line_delivered_before_a_partial_replay_is_not_sent_again(self) -> None:
        server = FakeServer(history=2, grace=60)
        network = FakeNetwork(server)
        observer = RecordingObserver()
        factory = ChatClientFactory("carol", observer, clock=server.clock, rng=random.Random(3))
        EndpointConnector(network, factory).connect()
        network.flush()
        watcher = server.registered("dave")  # JOIN 2
        network.flush()
        factory.say("x")  # MSG 3: its echo will fall out of the 2-event history
        factory.say("y")  # MSG 4: replayed
        for pump in network.pumps:  # both reach the server; the echoes are lost in the cut
            pump.serverIO.bufferReceived(pump.clientIO.getOutBuffer())
        network.cut()  # LEFT 5
        network.advance(2)
        self.assertIn("resumed 1 partial missing=1", observer.events)  # y shown; MSG 3 (x) gone
        said = [line for line in watcher.received() if line.startswith(b"MSG")]
        self.assertEqual(said, [b"MSG 3 carol x", b"MSG 4 carol y"])
        self.assertTrue(factory.session.idle)


class QuitTests(ClientTestCase):
    def test_quit_against_a_frozen_server_still_ends(self) -> None:
        self.factory.quit()  # the QUIT is written, but nothing is delivered any more
        self.server.clock.pump([1] * 6)
        self.assertEqual(
            [event for event in self.observer.events if event.startswith("gave up")], ["gave up: you quit"]
        )

    def test_quit_is_reported_once_even_when_the_connection_then_drops(self) -> None:
        self.factory.quit()
        self.network.flush()
        self.network.cut()
        self.server.clock.pump([1] * 10)
        self.assertEqual(self.observer.events.count("gave up: you quit"), 1)

    def test_quit_before_welcome_is_not_undone_by_the_welcome(self) -> None:
        observer = RecordingObserver()
        factory = ChatClientFactory("quitter", observer, clock=self.server.clock, rng=random.Random(1))
        EndpointConnector(self.network, factory).connect()
        self.network.pumps[-1].pump()  # HELLO in, NICK out; WELCOME not yet delivered
        factory.quit()
        self.network.flush()
        self.server.advance(60)
        self.network.flush()
        self.assertFalse(factory.continueTrying)
        self.assertNotIn("registered quitter resumed=False", observer.events)
        self.assertEqual(observer.delays, [])


class RefusedLineTests(SynchronousTestCase):
    def test_a_line_too_long_for_the_server_is_dropped_not_resent_for_ever(self) -> None:
        server = FakeServer(max_line=40, grace=60)
        network = FakeNetwork(server)
        observer = RecordingObserver()
        factory = ChatClientFactory("carol", observer, clock=server.clock, rng=random.Random(3))
        EndpointConnector(network, factory).connect()
        network.flush()
        factory.say("short")
        factory.say("x" * 100)
        factory.say("after")
        network.advance(30)
        self.assertIn("error 413 line too long: not sent again: '" + "x" * 60 + "'", observer.events)
        self.assertEqual([text for _, _, text in observer.messages], ["short", "after"])
        self.assertLessEqual(sum(1 for event in observer.events if event.startswith("disconnected")), 1)


class MalformedServerTests(ClientTestCase):
    def test_a_hello_without_heartbeat_settings_is_refused_not_crashed_on(self) -> None:
        protocol = self.factory.protocolInstance
        assert protocol is not None
        for greeting in [
            b"HELLO hbchat/1\n",
            b"HELLO hbchat/1 ping=0 timeout=0\n",
            b"HELLO hbchat/1 ping=x timeout=1\n",
        ]:
            protocol.dataReceived(greeting)  # no exception escapes


class OwnNickWaitTests(InterruptedRegistrationTests):
    def test_waiting_for_our_own_nick_does_not_use_up_the_retries(self) -> None:
        self.factory.plan.max_retries = 2
        self.network.advance(150)
        self.assertIn("registered carol resumed=False", self.observer.events)


class NickTakenMeanwhileTests(InterruptedRegistrationTests):
    def test_a_nick_someone_else_holds_is_given_up_on_once_our_own_could_not_hold_it(self) -> None:
        self.factory.plan.max_retries = 3
        self.network.connections = 0
        self.server.advance(61)  # our lost registration's session expires...
        other = self.server.registered("carol")  # ...and someone else takes the nick, and stays
        for _ in range(200):
            self.network.advance(5)
            other.sendLine("PING")
        self.assertTrue(any(event.startswith("gave up") for event in self.observer.events), self.observer.events)
        self.assertNotIn("registered carol resumed=False", self.observer.events)


class GreetingTests(ClientTestCase):
    def greet(self, factory: ChatClientFactory, hello: bytes) -> None:
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        protocol.dataReceived(hello)

    def test_a_server_that_wants_a_password_we_do_not_have_is_given_up_on(self) -> None:
        observer = RecordingObserver()
        factory = ChatClientFactory("hana", observer, clock=Clock())
        self.greet(factory, b"HELLO hbchat/1 ping=30 timeout=90 auth=required\n")
        self.assertEqual(len(observer.events), 1)
        self.assertTrue(observer.events[0].startswith("gave up: the server requires a password"), observer.events)

    def test_another_protocol_in_the_greeting_is_refused(self) -> None:
        factory = ChatClientFactory("hana", RecordingObserver(), clock=Clock())
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"HELLO hbchat/2 ping=30 timeout=90\n")
        self.assertIsNone(factory.protocolInstance)
        self.assertIn("not hbchat/1", protocol.problem or "")


class PacingTests(SynchronousTestCase):
    """The client keeps under the server's rate limit, so that a pipe of lines is never kicked."""

    def connectTo(self, server: FakeServer) -> tuple[FakeNetwork, RecordingObserver, ChatClientFactory]:
        network = FakeNetwork(server)
        observer = RecordingObserver()
        factory = ChatClientFactory("carol", observer, clock=server.clock, rng=random.Random(3))
        EndpointConnector(network, factory).connect()
        network.flush()
        return network, observer, factory

    def test_a_flood_of_lines_is_paced_under_the_default_limit_and_all_delivered(self) -> None:
        server = FakeServer(ping=5, timeout=15)
        network, observer, factory = self.connectTo(server)
        for n in range(600):
            factory.say(f"line {n}")
        network.flush()
        self.assertLess(len(observer.messages), 200)  # not all at once
        network.advance(12)
        self.assertEqual([text for _, _, text in observer.messages], [f"line {n}" for n in range(600)])
        self.assertEqual([event for event in observer.events if event.startswith("error 429")], [])
        self.assertEqual(server.factory.stats.rateLimited, 0)

    def test_the_pace_follows_the_rate_the_greeting_tells(self) -> None:
        server = FakeServer(ping=5, timeout=15, rate=10, burst=20)
        network, observer, factory = self.connectTo(server)
        for n in range(50):
            factory.say(f"line {n}")
        network.advance(2)
        self.assertLess(len(observer.messages), 40)
        network.advance(6)
        self.assertEqual(len(observer.messages), 50)
        self.assertEqual(server.factory.stats.rateLimited, 0)

    def test_a_tiny_burst_at_real_clock_values_neither_spins_nor_stalls(self) -> None:
        server = FakeServer(ping=5, timeout=15, rate=100, burst=2)
        server.clock.advance(1763795000.5)
        network, observer, factory = self.connectTo(server)
        for n in range(20):
            factory.say(f"line {n}")
        for _ in range(400):  # 2 s in steps of 5 ms, so that the lines arrive as they are paced
            server.advance(0.005)
            network.flush()
        self.assertEqual(len(observer.messages), 20)
        self.assertEqual(server.factory.stats.rateLimited, 0)
        self.assertLess(len(server.clock.getDelayedCalls()), 10)

    def test_a_huge_burst_in_the_greeting_falls_back_to_the_defaults(self) -> None:
        factory = ChatClientFactory("carol", RecordingObserver(), clock=Clock(), rng=random.Random(3))
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        protocol.dataReceived(b"HELLO hbchat/1 ping=30 timeout=90 rate=10 burst=" + b"9" * 400 + b"\n")
        self.assertEqual(factory.outbox.pace, pace_for(100, 200))

    def test_without_a_limit_nothing_waits(self) -> None:
        server = FakeServer(ping=5, timeout=15, rate=0)
        network, observer, factory = self.connectTo(server)
        for n in range(1000):
            factory.say(f"line {n}")
        network.flush()
        self.assertEqual(len(observer.messages), 1000)

    def test_a_refused_say_is_sent_again_and_the_client_slows_down(self) -> None:
        # The server allows less than it says (as an older or misconfigured one might).
        server = FakeServer(ping=5, timeout=15, rate=10, burst=20)
        network, observer, factory = self.connectTo(server)
        server.factory.lineBucket = Bucket(rate=2, burst=3)
        server.advance(2)
        for n in range(8):
            factory.say(f"line {n}")
        network.advance(20)
        self.assertEqual([text for _, _, text in observer.messages], [f"line {n}" for n in range(8)])
        self.assertTrue(any(event.startswith("error 429 ") and "slowing down" in event for event in observer.events))
        self.assertTrue(factory.connected)


class TellLengthTests(ClientTestCase):
    def test_a_tell_too_long_for_the_server_is_refused_before_it_is_sent(self) -> None:
        error = self.assertRaises(ValueError, self.factory.tell, "bob", "x" * 4092)
        self.assertIn("too long", str(error))
        self.factory.say("after the tell")
        self.network.flush()
        self.assertEqual(self.ownTexts(self.observer), ["after the tell"])


class GiveUpAfterTests(ClientTestCase):
    """Issue #15 item 8: how long the client goes without a connection is bounded, and each retry says why."""

    def unreachableClient(self, give_up_after: float) -> tuple[ChatClientFactory, RecordingObserver]:
        observer = RecordingObserver()
        self.network.reachable = False
        factory = ChatClientFactory(
            "gina", observer, clock=self.server.clock, rng=random.Random(5), give_up_after=give_up_after
        )
        EndpointConnector(self.network, factory).connect()
        return factory, observer

    def passTime(self, seconds: float) -> None:
        """Let time pass in small steps, so that each retry scheduled meanwhile is made."""
        for _ in range(round(seconds * 4)):
            self.server.advance(0.25)  # exact in binary: the steps add up to exactly ``seconds``

    def test_each_retry_says_why_the_attempt_failed(self) -> None:
        _, observer = self.unreachableClient(60)
        self.passTime(30)
        self.assertGreater(len(observer.retryReasons), 2)
        for reason in observer.retryReasons:
            self.assertEqual(reason, "could not connect: connection refused")

    def test_an_unreachable_server_is_given_up_on_after_the_time(self) -> None:
        _, observer = self.unreachableClient(20)
        self.passTime(19.75)
        self.assertFalse([event for event in observer.events if event.startswith("gave up")])
        self.passTime(0.25)
        self.assertEqual(
            observer.events[-1],
            "gave up: could not connect: connection refused; gave up after 20 s without a connection",
        )
        retries = len(observer.delays)
        self.passTime(600)
        self.assertEqual(len(observer.delays), retries)
        self.assertEqual(len([event for event in observer.events if event.startswith("gave up")]), 1)

    def test_the_time_counts_from_when_the_connection_was_lost(self) -> None:
        observer = RecordingObserver()
        factory = self.makeClient("gina", observer, give_up_after=20)
        self.network.advance(100)
        self.assertTrue(factory.connected)
        self.network.reachable = False
        self.network.cut()
        self.passTime(19)
        self.assertFalse([event for event in observer.events if event.startswith("gave up")])
        self.passTime(1)
        self.assertTrue(observer.events[-1].startswith("gave up: could not connect"), observer.events)
        self.assertTrue(observer.events[-1].endswith("gave up after 20 s without a connection"), observer.events)

    def test_a_connection_that_comes_back_in_time_stops_the_countdown(self) -> None:
        observer = RecordingObserver()
        factory = self.makeClient("gina", observer, give_up_after=20)
        self.network.cut()
        self.network.advance(5)
        self.assertTrue(factory.connected)
        self.network.advance(100)
        self.assertTrue(factory.connected)
        self.assertFalse([event for event in observer.events if event.startswith("gave up")])

    def test_an_attempt_still_under_way_is_ended_at_the_time(self) -> None:
        observer = RecordingObserver()
        factory = ChatClientFactory("gina", observer, clock=self.server.clock, give_up_after=5)
        EndpointConnector(self.network, factory).connect()
        self.passTime(5)  # nothing is flushed: the server never greets
        self.assertEqual(observer.events[-1], "gave up: could not connect; gave up after 5 s without a connection")
        self.assertTrue(self.network.pumps[-1].clientIO.disconnecting)
        self.passTime(600)
        self.assertEqual(observer.delays, [])

    def test_without_a_time_the_client_keeps_trying(self) -> None:
        self.network.reachable = False
        observer = RecordingObserver()
        EndpointConnector(self.network, ChatClientFactory("hank", observer, clock=self.server.clock)).connect()
        self.passTime(3600)
        self.assertFalse([event for event in observer.events if event.startswith("gave up")])
        self.assertGreater(len(observer.delays), 100)
