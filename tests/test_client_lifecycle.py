"""The client's lifecycle (hbchat.client.lifecycle): every transition, and the inputs each state refuses."""

from __future__ import annotations

from collections.abc import Callable

from automat import NoTransition
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from hbchat.client.factory import ChatClientFactory
from hbchat.client.lifecycle import ClientLife, LifeCore, Loss, Phase, Quit, Welcome, client_life
from hbchat.client.protocol import ChatClientProtocol
from tests.test_client import RecordingObserver


def _greeted(life: ClientLife) -> None:
    life.hello()


def _registering(life: ClientLife) -> None:
    life.hello()
    life.register()


def _resuming(life: ClientLife) -> None:
    life.hello()
    life.resume()


def _nick_held(life: ClientLife) -> None:
    _registering(life)
    life.own_nick_held()


def _ready(life: ClientLife) -> None:
    _registering(life)
    life.welcome()


def _quitting(life: ClientLife) -> None:
    _ready(life)
    life.quit()


#: How to reach each state from a new lifecycle.
PATHS: dict[str, Callable[[ClientLife], object]] = {
    "connecting": lambda life: None,
    "greeted": _greeted,
    "registering": _registering,
    "resuming": _resuming,
    "nick_held": _nick_held,
    "ready": _ready,
    "backing_off": lambda life: life.lost(),
    "quitting": _quitting,
    "gave_up": lambda life: life.give_up(),
}


def life_in(state: str) -> ClientLife:
    life = client_life()
    PATHS[state](life)
    return life


class Watched:
    """A lifecycle and the phase its transitions record."""

    def __init__(self, state: str = "connecting") -> None:
        self.core = LifeCore()
        self.life = client_life(self.core)
        PATHS[state](self.life)

    @property
    def phase(self) -> Phase:
        return self.core.phase


class PhaseTests(SynchronousTestCase):
    def test_every_state_is_recorded_by_name(self) -> None:
        for state in PATHS:
            self.assertEqual(Watched(state).phase.value, state)

    def test_loops_keep_the_phase(self) -> None:
        watched = Watched("resuming")
        self.assertIs(watched.life.welcome(), Welcome.REPLAY)
        self.assertIs(watched.phase, Phase.RESUMING)
        watched = Watched("backing_off")
        self.assertIs(watched.life.lost(), Loss.STALE)
        self.assertIs(watched.phase, Phase.BACKING_OFF)


class ConnectingTests(SynchronousTestCase):
    def test_a_new_client_is_connecting_and_may_start_its_attempt(self) -> None:
        watched = Watched()
        watched.life.connect()
        self.assertIs(watched.phase, Phase.CONNECTING)

    def test_a_hello_greets(self) -> None:
        life = client_life()
        self.assertTrue(life.hello())
        self.assertRaises(NoTransition, life.hello)  # a second HELLO is not expected

    def test_a_failed_attempt_backs_off_and_the_next_attempt_connects_again(self) -> None:
        life = client_life()
        self.assertIs(life.lost(), Loss.UNGREETED)
        life.connect()
        self.assertTrue(life.hello())


class RegistrationTests(SynchronousTestCase):
    def test_a_nick_then_welcome_is_ready(self) -> None:
        watched = Watched("greeted")
        watched.life.register()
        self.assertIs(watched.phase, Phase.REGISTERING)
        self.assertIs(watched.life.welcome(), Welcome.READY)
        self.assertIs(watched.phase, Phase.READY)

    def test_a_resume_waits_for_the_end_of_its_replay(self) -> None:
        watched = Watched("greeted")
        watched.life.resume()
        self.assertIs(watched.phase, Phase.RESUMING)
        self.assertIs(watched.life.welcome(), Welcome.REPLAY)
        self.assertIs(watched.phase, Phase.RESUMING)
        watched.life.replay_ended()
        self.assertIs(watched.phase, Phase.READY)

    def test_a_lost_session_turns_a_resume_into_a_registration(self) -> None:
        watched = Watched("resuming")
        watched.life.register()
        self.assertIs(watched.phase, Phase.REGISTERING)

    def test_our_own_held_nick_is_waited_out(self) -> None:
        watched = Watched("registering")
        watched.life.own_nick_held()
        self.assertIs(watched.phase, Phase.NICK_HELD)
        self.assertIs(watched.life.lost(), Loss.OWN_NICK)
        self.assertIs(watched.phase, Phase.BACKING_OFF)

    def test_no_replay_ends_without_a_resume(self) -> None:
        for state in ("connecting", "greeted", "registering", "nick_held", "ready", "backing_off"):
            self.assertRaises(NoTransition, life_in(state).replay_ended)

    def test_no_welcome_is_expected_before_a_nick_or_resume_or_once_ready(self) -> None:
        for state in ("connecting", "greeted", "nick_held", "ready", "backing_off"):
            self.assertRaises(NoTransition, life_in(state).welcome)

    def test_nothing_is_sent_before_a_hello(self) -> None:
        for state in ("connecting", "backing_off"):
            self.assertRaises(NoTransition, life_in(state).register)
            self.assertRaises(NoTransition, life_in(state).resume)

    def test_only_a_registration_can_find_its_nick_held(self) -> None:
        for state in ("connecting", "greeted", "resuming", "ready", "backing_off", "quitting", "gave_up"):
            self.assertRaises(NoTransition, life_in(state).own_nick_held)


class LossTests(SynchronousTestCase):
    def test_each_state_tells_what_its_loss_means(self) -> None:
        expected = {
            "connecting": Loss.UNGREETED,
            "greeted": Loss.GREETED,
            "resuming": Loss.GREETED,
            "registering": Loss.REGISTRATION,
            "nick_held": Loss.OWN_NICK,
            "ready": Loss.READY,
            "backing_off": Loss.STALE,
            "quitting": Loss.QUIT,
            "gave_up": Loss.FINAL,
        }
        self.assertEqual({state: life_in(state).lost() for state in PATHS}, expected)

    def test_a_loss_backs_off_until_the_next_attempt(self) -> None:
        for state in ("greeted", "registering", "resuming", "nick_held", "ready"):
            life = life_in(state)
            life.lost()
            self.assertIs(life.lost(), Loss.STALE)
            life.connect()
            self.assertTrue(life.hello())

    def test_no_attempt_starts_while_connected_or_after_the_end(self) -> None:
        for state in ("greeted", "registering", "resuming", "nick_held", "ready", "quitting", "gave_up"):
            self.assertRaises(NoTransition, life_in(state).connect)


class DeadlineTests(SynchronousTestCase):
    def test_the_give_up_countdown_ends_only_a_client_without_a_registered_connection(self) -> None:
        ends = {state: life_in(state).out_of_time() for state in PATHS}
        self.assertEqual(
            {state for state, end in ends.items() if end},
            {"connecting", "greeted", "registering", "resuming", "nick_held", "backing_off"},
        )

    def test_the_hello_deadline_aborts_only_an_attempt_still_connecting(self) -> None:
        watched = Watched("connecting")
        self.assertTrue(watched.life.hello_overdue())
        self.assertIs(watched.phase, Phase.CONNECTING)

    def test_a_hello_read_in_the_turn_before_the_verdict_spares_the_attempt(self) -> None:
        for state in ("greeted", "registering", "resuming", "quitting", "gave_up"):
            watched = Watched(state)
            self.assertFalse(watched.life.hello_overdue())
            self.assertEqual(watched.phase.value, state)

    def test_no_hello_deadline_runs_once_ready_or_between_attempts(self) -> None:
        for state in ("nick_held", "ready", "backing_off"):
            self.assertRaises(NoTransition, life_in(state).hello_overdue)

    def test_the_quit_deadline_belongs_to_quitting(self) -> None:
        self.assertTrue(life_in("quitting").quit_timed_out())
        self.assertFalse(life_in("gave_up").quit_timed_out())
        for state in ("connecting", "greeted", "registering", "resuming", "nick_held", "ready", "backing_off"):
            self.assertRaises(NoTransition, life_in(state).quit_timed_out)


class LeavingTests(SynchronousTestCase):
    def test_a_registered_client_says_quit_and_waits_for_bye(self) -> None:
        watched = Watched("ready")
        self.assertIs(watched.life.quit(), Quit.SEND)
        self.assertIs(watched.phase, Phase.QUITTING)
        self.assertIs(watched.life.quit(), Quit.NOTHING)
        self.assertTrue(watched.life.give_up())
        self.assertIs(watched.phase, Phase.GAVE_UP)

    def test_an_unregistered_client_closes_at_once(self) -> None:
        for state in ("connecting", "greeted", "registering", "resuming", "nick_held", "backing_off"):
            life = life_in(state)
            self.assertIs(life.quit(), Quit.CLOSE)
            self.assertTrue(life.give_up())

    def test_a_client_that_quit_or_gave_up_answers_a_late_welcome_with_quit(self) -> None:
        self.assertIs(life_in("quitting").welcome(), Welcome.LEAVE)
        self.assertIs(life_in("gave_up").welcome(), Welcome.LEAVE)
        self.assertFalse(life_in("quitting").hello())
        self.assertFalse(life_in("gave_up").hello())

    def test_giving_up_is_news_once(self) -> None:
        for state in PATHS:
            life = life_in(state)
            self.assertEqual(life.give_up(), state != "gave_up", state)
            self.assertFalse(life.give_up())
            self.assertIs(life.quit(), Quit.NOTHING)
            self.assertFalse(life.out_of_time())

    def test_nothing_starts_again_after_giving_up(self) -> None:
        life = life_in("gave_up")
        self.assertRaises(NoTransition, life.register)
        self.assertRaises(NoTransition, life.resume)
        self.assertRaises(NoTransition, life.replay_ended)


class FactoryLifecycleTests(SynchronousTestCase):
    """The factory drives its lifecycle from what its connection hears."""

    def connect(self) -> tuple[ChatClientFactory, ChatClientProtocol, StringTransport, RecordingObserver]:
        observer = RecordingObserver()
        factory = ChatClientFactory("ida", observer, clock=Clock())
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return factory, protocol, transport, observer

    def test_a_second_hello_on_a_registered_connection_is_logged_not_obeyed(self) -> None:
        _, protocol, transport, _ = self.connect()
        protocol.dataReceived(b"HELLO hbchat/1 ping=5 timeout=15\nWELCOME ida t0k 3\n")
        transport.clear()
        with capturedLogs() as events:
            protocol.dataReceived(b"HELLO hbchat/1 ping=5 timeout=15\n")
        self.assertEqual(transport.value(), b"")  # no second NICK
        self.assertTrue(protocol.ready)
        self.assertEqual([event["log_format"] for event in events], ["unexpected line from server: {line!r}"])

    def test_quitting_before_the_hello_closes_the_connection_under_way(self) -> None:
        factory, _, transport, observer = self.connect()
        factory.quit()
        self.assertTrue(transport.disconnecting)
        self.assertEqual(observer.events, ["gave up: you quit"])

    def test_a_hello_after_quitting_gets_no_nick(self) -> None:
        factory, protocol, transport, _ = self.connect()
        factory.stopTrying()
        factory.life.quit()
        protocol.dataReceived(b"HELLO hbchat/1 ping=5 timeout=15\n")
        self.assertNotIn(b"NICK", transport.value())
        self.assertTrue(transport.disconnecting)

    def test_a_second_quit_while_waiting_for_bye_changes_nothing(self) -> None:
        factory, protocol, transport, observer = self.connect()
        protocol.dataReceived(b"HELLO hbchat/1 ping=5 timeout=15\nWELCOME ida t0k 3\n")
        factory.quit()
        factory.quit()
        self.assertEqual(transport.value().count(b"QUIT"), 1)
        self.assertEqual(observer.events, ["registered ida resumed=False"])
        factory.timer.advance(5)  # type: ignore[attr-defined]
        self.assertEqual(observer.events[-1], "gave up: you quit")
