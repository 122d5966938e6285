"""The client on ReconnectingClientFactory's public hooks: the reconnect plan, the endpoint connector."""

from __future__ import annotations

import random
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IAddress, IConnector, IProtocolFactory
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from hbchat.client.backoff import Backoff, IBackoff
from hbchat.client.connector import EndpointConnector
from hbchat.client.factory import ChatClientFactory
from hbchat.client.lifecycle import Deadline, Phase
from hbchat.client.owner import IConnectionOwner
from hbchat.client.policy import ErrorAction, ErrorContext, error_action
from hbchat.client.reconnect import ReconnectPlan
from tests.test_client import RecordingObserver


class PendingEndpoint:
    """An endpoint whose attempts stay pending until the test settles them."""

    def __init__(self) -> None:
        self.attempts: list[Deferred[object]] = []

    def connect(self, factory: IProtocolFactory) -> Deferred[object]:
        attempt: Deferred[object] = Deferred()
        self.attempts.append(attempt)
        return attempt


class ReconnectPlanTests(SynchronousTestCase):
    def plan(self, max_retries: int | None = None) -> ReconnectPlan:
        return ReconnectPlan(Backoff(), random.Random(7), max_retries)

    def test_the_backoff_is_an_ibackoff(self) -> None:
        self.assertTrue(verifyObject(IBackoff, Backoff()))

    def test_the_first_delay_is_within_the_spread(self) -> None:
        delay = self.plan().next_delay(100.0)
        assert delay is not None
        self.assertTrue(0 <= delay <= Backoff().spread)

    def test_later_delays_follow_the_outage_age(self) -> None:
        plan, backoff = self.plan(), Backoff()
        plan.next_delay(100.0)
        delay = plan.next_delay(200.0)  # 100 s into the outage: c = 50 s, capped at 30 s
        assert delay is not None
        self.assertTrue(backoff.floor(1, 100.0) <= delay <= backoff.ceiling(1, 100.0))
        self.assertEqual(backoff.floor(1, 100.0), 15.0)

    def test_a_hint_with_a_moment_is_followed_exactly_once(self) -> None:
        plan = self.plan()
        plan.hinted(10.0, 3.25)
        self.assertEqual(plan.next_delay(0.0), 3.25)
        self.assertNotEqual(plan.next_delay(1.0), 3.25)

    def test_a_hint_without_a_moment_bounds_the_delay(self) -> None:
        plan = self.plan()
        plan.hinted(0.5, None)
        delay = plan.next_delay(0.0)
        assert delay is not None
        self.assertTrue(0 <= delay <= 0.5)

    def test_the_retries_beyond_the_limit_end_the_plan(self) -> None:
        plan = self.plan(max_retries=2)
        self.assertIsNotNone(plan.next_delay(0.0))
        self.assertIsNotNone(plan.next_delay(1.0))
        self.assertIsNone(plan.next_delay(2.0))

    def test_a_forgiven_retry_grows_the_backoff_but_not_the_retries(self) -> None:
        plan = self.plan(max_retries=1)
        plan.forgive_next()
        self.assertIsNotNone(plan.next_delay(0.0))
        self.assertIsNotNone(plan.next_delay(1.0))
        self.assertEqual((plan.attempt, plan.retries), (2, 1))

    def test_a_reset_starts_the_next_outage_afresh(self) -> None:
        plan = self.plan(max_retries=1)
        plan.next_delay(0.0)
        plan.reset()
        self.assertEqual((plan.attempt, plan.retries), (0, 0))
        self.assertIsNotNone(plan.next_delay(500.0))
        self.assertEqual(plan.outage_since, 500.0)


class EndpointConnectorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.observer = RecordingObserver()
        self.factory = ChatClientFactory("ida", self.observer, clock=self.clock, rng=random.Random(3))
        self.endpoint = PendingEndpoint()
        self.connector = EndpointConnector(self.endpoint, self.factory)  # type: ignore[arg-type]

    def test_it_is_an_iconnector(self) -> None:
        self.assertTrue(verifyObject(IConnector, self.connector))

    def test_its_destination_names_the_endpoint(self) -> None:
        destination = self.connector.getDestination()
        self.assertTrue(verifyObject(IAddress, destination))
        self.assertIn("PendingEndpoint", str(destination))

    def test_the_factory_retries_through_it_after_a_failed_attempt(self) -> None:
        self.connector.connect()
        self.endpoint.attempts[0].errback(Failure(ConnectionRefusedError()))
        self.assertTrue(self.factory.reconnectPending)
        self.assertEqual(len(self.observer.delays), 1)
        self.clock.advance(self.observer.delays[0])
        self.assertEqual(len(self.endpoint.attempts), 2)
        self.assertFalse(self.factory.reconnectPending)

    def test_stop_trying_cancels_the_scheduled_reconnect(self) -> None:
        self.connector.connect()
        self.endpoint.attempts[0].errback(Failure(ConnectionRefusedError()))
        self.factory.stopTrying()
        self.assertFalse(self.factory.reconnectPending)
        self.clock.advance(60)
        self.assertEqual(len(self.endpoint.attempts), 1)

    def test_disconnect_while_connecting_cancels_the_attempt(self) -> None:
        self.factory.stopTrying()
        self.connector.connect()
        self.connector.disconnect()
        self.assertTrue(self.endpoint.attempts[0].called)

    def test_disconnect_once_connected_closes_the_connection(self) -> None:
        self.connector.connect()
        protocol = self.factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.endpoint.attempts[0].callback(protocol)
        protocol.dataReceived(b"HELLO hbchat/1 ping=5 timeout=15\n")
        self.connector.disconnect()
        self.assertTrue(transport.disconnecting)


class MidLineTests(SynchronousTestCase):
    def test_a_chunk_that_ends_within_a_line_is_told(self) -> None:
        factory = ChatClientFactory("ida", RecordingObserver(), clock=Clock())
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        protocol.dataReceived(b"HELLO hbchat/1 ping=5 timeout=15\nMSG 1 bo")
        self.assertTrue(protocol.midLine)
        protocol.dataReceived(b"b hi\n")
        self.assertFalse(protocol.midLine)


class ErrorPolicyTests(SynchronousTestCase):
    """serverError's table (hbchat.client.policy): the first rule that applies decides."""

    def action(self, code: int, **state: bool) -> ErrorAction:
        context: dict[str, Any] = dict(resuming=False, registering=False, ready=False, own_nick_recent=False)
        context.update(state)
        return error_action(ErrorContext(code, **context))

    def test_a_lost_session_on_resume_registers_afresh(self) -> None:
        self.assertIs(self.action(404, resuming=True), ErrorAction.REGISTER_AFRESH)
        self.assertIs(self.action(404, ready=True), ErrorAction.REPORT)

    def test_a_nick_held_soon_after_our_lost_nick_is_waited_out(self) -> None:
        self.assertIs(self.action(433, registering=True, own_nick_recent=True), ErrorAction.WAIT_FOR_OWN_NICK)
        self.assertIs(self.action(433, registering=True), ErrorAction.GIVE_UP)

    def test_final_errors_end_only_an_unregistered_client(self) -> None:
        for code in (401, 432, 433):
            self.assertIs(self.action(code), ErrorAction.GIVE_UP)
            self.assertIs(self.action(code, ready=True), ErrorAction.REPORT)

    def test_refusals_are_handled_whatever_the_state(self) -> None:
        for ready in (False, True):
            self.assertIs(self.action(413, ready=ready), ErrorAction.DROP_REFUSED)
            self.assertIs(self.action(429, ready=ready), ErrorAction.SLOW_DOWN)

    def test_anything_else_is_reported(self) -> None:
        self.assertIs(self.action(500, ready=True), ErrorAction.REPORT)


class DeadlineTests(SynchronousTestCase):
    def test_a_deadline_fires_once_and_can_be_stopped(self) -> None:
        clock, fired = Clock(), []
        deadline = Deadline(clock, 5.0, lambda: fired.append(clock.seconds()))
        deadline.start()
        deadline.start()  # running already: not moved
        clock.advance(3)
        deadline.start()
        clock.advance(2)
        self.assertEqual(fired, [5.0])
        self.assertFalse(deadline.running)
        deadline.start()
        deadline.stop()
        clock.advance(10)
        self.assertEqual(fired, [5.0])

    def test_a_deadline_without_seconds_never_runs(self) -> None:
        deadline = Deadline(Clock(), None, lambda: None)
        deadline.start()
        self.assertFalse(deadline.running)


class SeamTests(SynchronousTestCase):
    def test_the_factory_is_its_connections_iconnectionowner(self) -> None:
        factory = ChatClientFactory("ida", RecordingObserver(), clock=Clock())
        self.assertTrue(verifyObject(IConnectionOwner, factory))
        protocol = factory.buildProtocol(None)
        self.assertIs(protocol.owner, factory)
        self.assertIsNone(factory.phaseOf(protocol))  # not in use before its HELLO
        protocol.makeConnection(StringTransport())
        protocol.dataReceived(b"HELLO hbchat/1 ping=5 timeout=15\n")
        self.assertIs(factory.phaseOf(protocol), Phase.REGISTERING)


class StormClientsTests(SynchronousTestCase):
    def test_the_storm_clients_override_only_public_hooks(self) -> None:
        from hbchat.bench import storm

        for cls in (storm.BenchProtocol, storm.HbchatFactory, storm.StockFactory, storm.RecordingConnector):
            private = {
                name
                for name, value in vars(cls).items()
                if callable(value) and name.startswith("_") and not name.startswith("__")
            }
            self.assertEqual(private, set(), cls.__name__)
