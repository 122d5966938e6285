"""A server connection's lifecycle (hbchat.server.lifecycle): every transition, and the inputs each state refuses."""

from __future__ import annotations

from collections.abc import Callable

from automat import NoTransition
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from hbchat import wire
from hbchat.server.lifecycle import (
    Attach,
    Closing,
    ConnectionLife,
    Deadline,
    Ending,
    LifeCore,
    Phase,
    connection_life,
)
from hbchat.testing import FakeServer


def _authenticating(life: ConnectionLife) -> None:
    life.admit_plain()
    life.hold()


def _registered(life: ConnectionLife) -> None:
    life.admit_plain()
    life.attach()


def _closing(life: ConnectionLife) -> None:
    life.admit_plain()
    life.close()


def _closed(life: ConnectionLife) -> None:
    _closing(life)
    life.lost()


#: How to reach each state from a new lifecycle.
PATHS: dict[Phase, Callable[[ConnectionLife], object]] = {
    Phase.ACCEPTED: lambda life: None,
    Phase.HANDSHAKING: lambda life: life.admit_tls(),
    Phase.REGISTERING: lambda life: life.admit_plain(),
    Phase.AUTHENTICATING: _authenticating,
    Phase.REGISTERED: _registered,
    Phase.CLOSING: _closing,
    Phase.CLOSED: _closed,
}

#: Every input, by name, called without arguments.
INPUTS = (
    "admit_plain",
    "admit_tls",
    "refuse",
    "handshake_done",
    "hold",
    "release",
    "attach",
    "deadline",
    "close",
    "lost",
)

#: The inputs each state accepts; every other one is illegal there.
LEGAL: dict[Phase, set[str]] = {
    Phase.ACCEPTED: {"admit_plain", "admit_tls", "refuse"},
    Phase.HANDSHAKING: {"handshake_done", "deadline", "close", "lost"},
    Phase.REGISTERING: {"hold", "attach", "deadline", "close", "lost"},
    Phase.AUTHENTICATING: {"hold", "release", "attach", "deadline", "close", "lost"},
    Phase.REGISTERED: {"release", "deadline", "close", "lost"},
    Phase.CLOSING: {"handshake_done", "release", "attach", "deadline", "close", "lost"},
    Phase.CLOSED: {"handshake_done", "release", "attach", "deadline", "close"},
}


class Watched:
    """A lifecycle in a given state, and the phase its transitions record."""

    def __init__(self, phase: Phase = Phase.ACCEPTED) -> None:
        self.core = LifeCore()
        self.life = connection_life(self.core)
        PATHS[phase](self.life)

    @property
    def phase(self) -> Phase:
        return self.core.phase


class PhaseTests(SynchronousTestCase):
    def test_every_state_is_recorded_by_name(self) -> None:
        for phase in PATHS:
            self.assertIs(Watched(phase).phase, phase)

    def test_only_closing_and_closed_have_ended(self) -> None:
        self.assertEqual({phase for phase in Phase if phase.ended}, {Phase.CLOSING, Phase.CLOSED})

    def test_every_input_a_state_does_not_expect_is_refused_and_changes_nothing(self) -> None:
        for phase, legal in LEGAL.items():
            for name in set(INPUTS) - legal:
                watched = Watched(phase)
                with self.subTest(phase=phase, input=name):
                    self.assertRaises(NoTransition, getattr(watched.life, name))
                    self.assertIs(watched.phase, phase)

    def test_every_input_a_state_expects_is_taken(self) -> None:
        for phase, legal in LEGAL.items():
            for name in legal:
                watched = Watched(phase)
                with self.subTest(phase=phase, input=name):
                    getattr(watched.life, name)()


class AdmissionTests(SynchronousTestCase):
    def test_a_plain_connection_registers_at_once(self) -> None:
        watched = Watched()
        watched.life.admit_plain()
        self.assertIs(watched.phase, Phase.REGISTERING)

    def test_a_tls_connection_handshakes_first(self) -> None:
        watched = Watched()
        watched.life.admit_tls()
        self.assertIs(watched.phase, Phase.HANDSHAKING)
        self.assertTrue(watched.life.handshake_done())
        self.assertIs(watched.phase, Phase.REGISTERING)

    def test_a_refused_connection_is_closing(self) -> None:
        watched = Watched()
        watched.life.refuse()
        self.assertIs(watched.phase, Phase.CLOSING)
        self.assertIs(watched.life.lost(), Ending.ON_PURPOSE)

    def test_a_handshake_that_completes_after_the_close_produces_nothing(self) -> None:
        watched = Watched(Phase.HANDSHAKING)
        watched.life.close()
        self.assertFalse(watched.life.handshake_done())
        self.assertIs(watched.phase, Phase.CLOSING)


class RegistrationTests(SynchronousTestCase):
    def test_an_awaited_verdict_holds_the_input_once(self) -> None:
        watched = Watched(Phase.REGISTERING)
        self.assertTrue(watched.life.hold())
        self.assertIs(watched.phase, Phase.AUTHENTICATING)
        self.assertFalse(watched.life.hold())  # the chat's answer after the password's
        self.assertIs(watched.phase, Phase.AUTHENTICATING)

    def test_a_refusing_verdict_registers_again(self) -> None:
        watched = Watched(Phase.AUTHENTICATING)
        self.assertTrue(watched.life.release())
        self.assertIs(watched.phase, Phase.REGISTERING)

    def test_an_attach_registers_from_registering_or_authenticating(self) -> None:
        for phase in (Phase.REGISTERING, Phase.AUTHENTICATING):
            watched = Watched(phase)
            self.assertIs(watched.life.attach(), Attach.REGISTERED)
            self.assertIs(watched.phase, Phase.REGISTERED)

    def test_the_release_after_an_attach_keeps_it_registered(self) -> None:
        watched = Watched(Phase.AUTHENTICATING)
        watched.life.attach()
        self.assertTrue(watched.life.release())
        self.assertIs(watched.phase, Phase.REGISTERED)

    def test_an_attach_after_the_end_is_too_late(self) -> None:
        for phase in (Phase.CLOSING, Phase.CLOSED):
            watched = Watched(phase)
            self.assertIs(watched.life.attach(), Attach.TOO_LATE)
            self.assertIs(watched.phase, phase)

    def test_a_release_after_the_end_handles_nothing(self) -> None:
        for phase in (Phase.CLOSING, Phase.CLOSED):
            self.assertFalse(Watched(phase).life.release())


class DeadlineTests(SynchronousTestCase):
    def test_before_registration_the_deadline_is_the_registration_timeout(self) -> None:
        for phase in (Phase.HANDSHAKING, Phase.REGISTERING, Phase.AUTHENTICATING):
            watched = Watched(phase)
            self.assertIs(watched.life.deadline(), Deadline.REGISTRATION)
            self.assertIs(watched.phase, phase)

    def test_once_registered_the_deadline_is_the_idle_verdict(self) -> None:
        watched = Watched(Phase.REGISTERED)
        self.assertIs(watched.life.deadline(), Deadline.IDLE)
        self.assertIs(watched.phase, Phase.REGISTERED)

    def test_once_ended_the_deadline_means_nothing(self) -> None:
        for phase in (Phase.CLOSING, Phase.CLOSED):
            self.assertIs(Watched(phase).life.deadline(), Deadline.NONE)


class EndingTests(SynchronousTestCase):
    def test_closing_an_unregistered_connection_ends_its_handshake(self) -> None:
        for phase in (Phase.HANDSHAKING, Phase.REGISTERING, Phase.AUTHENTICATING):
            watched = Watched(phase)
            self.assertIs(watched.life.close(), Closing.UNREGISTERED)
            self.assertIs(watched.phase, Phase.CLOSING)

    def test_closing_a_registered_connection_leaves_the_chat(self) -> None:
        watched = Watched(Phase.REGISTERED)
        self.assertIs(watched.life.close(), Closing.REGISTERED)
        self.assertIs(watched.phase, Phase.CLOSING)

    def test_a_second_close_does_nothing(self) -> None:
        for phase in (Phase.CLOSING, Phase.CLOSED):
            watched = Watched(phase)
            self.assertIs(watched.life.close(), Closing.ALREADY)
            self.assertIs(watched.phase, phase)

    def test_a_loss_says_how_the_connection_ended(self) -> None:
        expected = {
            Phase.HANDSHAKING: Ending.IN_HANDSHAKE,
            Phase.REGISTERING: Ending.UNREGISTERED,
            Phase.AUTHENTICATING: Ending.UNREGISTERED,
            Phase.REGISTERED: Ending.REGISTERED,
            Phase.CLOSING: Ending.ON_PURPOSE,
        }
        for phase, ending in expected.items():
            watched = Watched(phase)
            self.assertIs(watched.life.lost(), ending)
            self.assertIs(watched.phase, Phase.CLOSED)


class ConnectionPhaseTests(SynchronousTestCase):
    """The phases a real ChatServerProtocol goes through, on a fake clock."""

    def test_a_connection_registers_and_then_closes_on_quit(self) -> None:
        server = FakeServer()
        peer = server.connect()
        self.assertIs(peer.protocol.core.phase, Phase.REGISTERING)
        peer.register("alice")
        self.assertIs(peer.protocol.core.phase, Phase.REGISTERED)
        peer.sendLine("QUIT")
        self.assertIs(peer.protocol.core.phase, Phase.CLOSING)
        peer.finishClose()
        self.assertIs(peer.protocol.core.phase, Phase.CLOSED)

    def test_a_refused_connection_never_registers(self) -> None:
        server = FakeServer(max_clients=1)
        server.connect()
        refused = server.connect()
        self.assertIs(refused.protocol.core.phase, Phase.CLOSING)
        self.assertEqual(refused.received(), [wire.ERR_SERVER_FULL.rstrip(b"\n")])

    def test_a_password_check_holds_the_connection_in_authenticating(self) -> None:
        verdict: Deferred[bytes] = Deferred()

        class Later(InMemoryUsernamePasswordDatabaseDontUse):
            def requestAvatarId(self, credentials: object) -> Deferred[bytes]:
                return verdict

        server = FakeServer(checker=Later())
        peer = server.connect()
        peer.sendLine("NICK alice secret")
        peer.sendLine("WHO")
        self.assertIs(peer.protocol.core.phase, Phase.AUTHENTICATING)
        verdict.callback(b"alice")
        server.turn()
        self.assertIs(peer.protocol.core.phase, Phase.REGISTERED)
        self.assertIn(b"USERS alice", peer.received())

    def test_the_registration_deadline_before_registering_is_err_408(self) -> None:
        server = FakeServer(register_timeout=5)
        peer = server.connect()
        server.advance(5)
        self.assertIn(wire.ERR_REGISTRATION_TIMEOUT.rstrip(b"\n"), peer.received())
        self.assertIs(peer.protocol.core.phase, Phase.CLOSING)

    def test_the_same_timer_once_registered_is_the_idle_verdict(self) -> None:
        server = FakeServer(register_timeout=5, ping=1, timeout=3)
        peer = server.registered("alice")
        for _ in range(50):  # silent, on time: a tenth of a second at a time
            server.advance(0.1)
        self.assertTrue(peer.aborted)
        self.assertNotIn(wire.ERR_REGISTRATION_TIMEOUT.rstrip(b"\n"), peer.received())
        self.assertIs(peer.protocol.closeReason, "timeout")
