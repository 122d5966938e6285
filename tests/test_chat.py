"""
The chat as its own object (hbchat.server.chat), admission (hbchat.server.admission) and
the drain (hbchat.server.drain), driven without a reactor or a connection.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from hbchat import wire
from hbchat.closereasons import CloseReason
from hbchat.config import ServerConfig
from hbchat.ops.stats import ServerStats
from hbchat.server.admission import Admission
from hbchat.server.chat import Chat
from hbchat.server.drain import Drain
from hbchat.server.interfaces import IChat, IChatMember, IServerEvents
from hbchat.server.sessions import Session
from hbchat.testing import FakeServer


@implementer(IChatMember)
class Member:
    """A chat member that records what it is given."""

    def __init__(self, peer: str = "127.0.0.1:1", host: str | None = None) -> None:
        self.nick: bytes | None = None
        self.peer = peer
        self.host = host
        self.session: Session[IChatMember] | None = None
        self.received = b""
        self.closed: list[tuple[bytes, CloseReason | None]] = []
        self.makesWay = True

    def deliver(self, data: bytes) -> None:
        self.received += data

    def attached(self, session: Session[IChatMember]) -> None:
        self.session = session
        self.nick = session.nick

    def closeWith(self, line: bytes, reason: CloseReason) -> None:
        self.closed.append((line, reason))

    def closeNow(self, line: bytes) -> None:
        self.closed.append((line, None))

    def mayMakeWay(self) -> bool:
        return self.makesWay


class ChatTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.stats = ServerStats()
        self.turns = 0
        self.chat = Chat(ServerConfig(), self.clock, self.stats, self.turn_ended)

    def turn_ended(self) -> None:
        self.turns += 1

    def member(self, nick: bytes) -> Member:
        member = Member()
        self.assertTrue(self.successResultOf(self.chat.register(member, nick)))
        self.clock.advance(0)
        return member

    def test_the_chat_provides_ichat(self) -> None:
        self.assertTrue(verifyObject(IChat, self.chat))

    def test_a_test_member_provides_ichatmember(self) -> None:
        self.assertTrue(verifyObject(IChatMember, Member()))

    def test_server_stats_provide_iserverevents(self) -> None:
        self.assertTrue(verifyObject(IServerEvents, self.stats))

    def test_registering_welcomes_and_announces_a_join_numbered_by_the_chat(self) -> None:
        alice = self.member(b"alice")
        lines = alice.received.splitlines()
        self.assertTrue(lines[0].startswith(b"WELCOME alice "))
        self.assertEqual(lines[1], b"JOIN 1 alice")
        self.assertEqual(self.chat.seq, 1)

    def test_a_taken_nick_is_refused_regardless_of_case(self) -> None:
        self.member(b"alice")
        self.assertFalse(self.successResultOf(self.chat.register(Member(), b"ALICE")))

    def test_say_fires_with_the_sequence_number_the_chat_gave_it(self) -> None:
        alice = self.member(b"alice")
        bob = self.member(b"bob")
        self.assertEqual(self.successResultOf(self.chat.say(alice, b"hi")), 3)
        self.clock.advance(0)
        self.assertTrue(bob.received.endswith(b"MSG 3 alice hi\n"))

    def test_the_end_of_a_turn_is_reported_after_its_output_went_out(self) -> None:
        self.member(b"alice")
        self.assertGreaterEqual(self.turns, 1)

    def test_tell_reaches_only_a_connected_nick(self) -> None:
        alice = self.member(b"alice")
        bob = self.member(b"bob")
        self.assertTrue(self.chat.tell(alice, b"BOB", b"psst"))
        self.assertFalse(self.chat.tell(alice, b"carol", b"psst"))
        self.clock.advance(0)
        self.assertTrue(bob.received.endswith(b"PRIV alice psst\n"))

    def test_who_lists_the_connected_users(self) -> None:
        self.member(b"alice")
        self.member(b"bob")
        self.assertEqual(self.chat.who(), wire.users([b"alice", b"bob"]))

    def test_leaving_announces_the_departure_and_keeps_the_session_resumable(self) -> None:
        alice = self.member(b"alice")
        bob = self.member(b"bob")
        session = alice.session
        assert session is not None
        self.chat.leave(alice, CloseReason.TIMEOUT)
        self.clock.advance(0)
        self.assertTrue(bob.received.endswith(b"LEFT 3 alice timeout\n"))
        self.assertIsNone(alice.session)
        self.assertIs(self.chat.sessions.by_token(session.token), session)

    def test_resuming_replays_what_was_missed_and_counts_the_outcome(self) -> None:
        alice = self.member(b"alice")
        bob = self.member(b"bob")
        session = alice.session
        assert session is not None
        self.chat.leave(alice, CloseReason.ERROR)
        self.chat.say(bob, b"while you were away")
        again = Member()
        self.assertTrue(self.successResultOf(self.chat.resume(again, session.token, 2)))
        self.clock.advance(0)
        lines = again.received.splitlines()
        self.assertEqual(lines[1:3], [b"LEFT 3 alice error", b"MSG 4 bob while you were away"])
        self.assertEqual(lines[3], wire.resumed(2, True).rstrip(b"\n"))
        self.assertEqual(self.stats.resumes["complete"], 1)

    def test_resuming_an_attached_session_replaces_its_old_connection(self) -> None:
        alice = self.member(b"alice")
        session = alice.session
        assert session is not None
        again = Member()
        self.successResultOf(self.chat.resume(again, session.token, 1))
        self.assertEqual(alice.closed, [(wire.bye("replaced"), CloseReason.REPLACED)])
        self.assertIsNone(alice.session)

    def test_an_unknown_token_is_refused_and_counted(self) -> None:
        self.assertFalse(self.successResultOf(self.chat.resume(Member(), b"nope", 0)))
        self.assertEqual(self.stats.resumes["unknown"], 1)

    def test_while_stopping_departures_are_not_announced(self) -> None:
        alice = self.member(b"alice")
        bob = self.member(b"bob")
        self.chat.stopping = True
        self.chat.leave(alice, CloseReason.ERROR)
        self.clock.advance(0)
        self.assertNotIn(b"LEFT", bob.received)
        self.assertEqual(self.chat.seq, 2)


class AdmissionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.stats = ServerStats()
        self.stopping = False
        self.config = ServerConfig(max_clients=3, max_per_ip=2, max_handshakes=2, register_timeout=10)
        self.admission: Admission[Member] = Admission(self.config, self.clock, self.stats, lambda: self.stopping)

    def test_a_connection_is_admitted_and_counted_as_registering(self) -> None:
        member = Member()
        self.assertIsNone(self.admission.admit(member, "10.0.0.1"))
        self.assertIn(member, self.admission.handshakes)
        self.assertEqual(member.host, "10.0.0.1")
        self.assertEqual(self.admission.handshaking, 1)

    def test_too_many_from_one_address_are_refused(self) -> None:
        self.admission.admit(Member(), "10.0.0.1")
        self.admission.admit(Member(), "10.0.0.1")
        self.assertEqual(self.admission.admit(Member(), "10.0.0.1"), wire.ERR_TOO_MANY_FROM_ADDRESS)

    def test_an_exempt_address_is_not_counted_per_address(self) -> None:
        for _ in range(3):
            self.assertIsNone(self.admission.admit(Member(), None))

    def test_a_full_server_refuses(self) -> None:
        for n in range(3):
            self.admission.admit(Member(), f"10.0.0.{n}")
        self.assertEqual(self.admission.admit(Member(), "10.0.0.9"), wire.ERR_SERVER_FULL)

    def test_a_stopping_server_refuses(self) -> None:
        self.stopping = True
        self.assertEqual(self.admission.admit(Member(), None), wire.ERR_SERVER_FULL)

    def test_a_released_connection_frees_its_address(self) -> None:
        first = Member()
        self.admission.admit(first, "10.0.0.1")
        self.admission.admit(Member(), "10.0.0.1")
        self.assertTrue(self.admission.release(first))
        self.assertIsNone(self.admission.admit(Member(), "10.0.0.1"))

    def test_releasing_a_connection_never_admitted_says_so(self) -> None:
        self.assertFalse(self.admission.release(Member()))

    def test_the_oldest_registering_makes_way_after_its_grace(self) -> None:
        oldest, second = Member(), Member()
        self.admission.admit(oldest, None)
        self.admission.admit(second, None)
        self.clock.advance(self.admission.handshakes.grace + 0.1)
        self.admission.admit(Member(), None)
        self.assertEqual(oldest.closed, [(wire.ERR_TOO_MANY_REGISTERING, CloseReason.EVICTED)])
        self.assertEqual(self.stats.evictions, 1)

    def test_accepting_pauses_when_the_room_is_full_and_is_counted(self) -> None:
        self.admission.admit(Member(), None)
        self.admission.admit(Member(), None)
        self.assertTrue(self.admission.acceptPaused)
        self.assertEqual(self.stats.acceptPauses, 1)

    def test_a_registration_ends_the_handshake(self) -> None:
        member = Member()
        self.admission.admit(member, None)
        self.admission.handshake_over(member, registered=True)
        self.assertNotIn(member, self.admission.handshakes)
        self.assertEqual(self.admission.handshaking, 0)


class DrainTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.chat = Chat(ServerConfig(), self.clock, ServerStats(), lambda: None)
        self.connections: set[Member] = {Member(f"p{n}") for n in range(4)}
        self.drain = Drain(self.chat, self.connections, self.clock, lambda: 10.0)

    def test_a_drain_stops_the_chat_and_says_bye_shutdown_to_everyone_over_the_drain(self) -> None:
        done = self.drain.shutdown(0.2)
        self.assertTrue(self.chat.stopping)
        self.assertEqual(sum(len(member.closed) for member in self.connections), 2)
        self.clock.advance(0.1)
        self.assertTrue(all(member.closed[0][0].startswith(b"BYE shutdown retry=10") for member in self.connections))
        self.assertNoResult(done)
        self.connections.clear()
        self.drain.connection_gone()
        self.successResultOf(done)

    def test_a_drain_of_nobody_is_over_at_once(self) -> None:
        self.connections.clear()
        self.successResultOf(self.drain.shutdown(1.0))

    def test_close_now_closes_everyone_at_once(self) -> None:
        self.drain.shutdown(5.0)
        self.drain.close_now()
        self.assertTrue(all(member.closed[-1][1] is None for member in self.connections))


class ConnectionInterfaceTests(SynchronousTestCase):
    def test_a_server_connection_is_a_chat_member(self) -> None:
        self.assertTrue(verifyObject(IChatMember, FakeServer().connect().protocol))

    def test_the_factory_builds_protocols_around_one_chat(self) -> None:
        server = FakeServer()
        self.assertTrue(verifyObject(IChat, server.factory.chat))
        self.assertTrue(verifyObject(IServerEvents, server.factory.events))


class LaterChat(Chat):
    """A chat whose answers to NICK and RESUME come later, when the test says (as a shared store's would)."""

    def __init__(
        self, config: ServerConfig, clock: Clock, events: IServerEvents, turn_ended: Callable[[], None]
    ) -> None:
        super().__init__(config, clock, events, turn_ended)
        self.pending: list[tuple[Deferred[bool], Callable[[], Deferred[bool]]]] = []

    def register(self, member: IChatMember, nick: bytes) -> Deferred[bool]:
        later: Deferred[bool] = Deferred()
        self.pending.append((later, lambda: Chat.register(self, member, nick)))
        return later

    def resume(self, member: IChatMember, token: bytes, last_seq: int) -> Deferred[bool]:
        later: Deferred[bool] = Deferred()
        self.pending.append((later, lambda: Chat.resume(self, member, token, last_seq)))
        return later

    def answer(self) -> None:
        pending, self.pending = self.pending, []
        for later, answer in pending:
            answer().chainDeferred(later)


class LaterAnswerTests(SynchronousTestCase):
    """A chat that answers later stands in without the connection code changing."""

    def setUp(self) -> None:
        self.server = FakeServer()
        factory = self.server.factory
        self.chat = LaterChat(factory.config, self.server.clock, factory.events, factory._turnEnded)
        factory.chat = factory.drain.chat = self.chat

    def test_the_lines_after_a_nick_wait_for_the_chats_answer(self) -> None:
        peer = self.server.connect()
        peer.send(b"NICK alice\nSAY hello\n")
        self.assertNotIn(b"ERR", b"".join(peer.received()))
        self.assertTrue(peer.protocol.held is not None)
        self.chat.answer()
        lines = peer.received()
        self.assertTrue(lines[0].startswith(b"WELCOME alice "))
        self.assertEqual(lines[1:], [b"JOIN 1 alice", b"MSG 2 alice hello"])
        self.assertIsNone(peer.protocol.held)

    def test_a_taken_nick_answered_later_is_refused_and_the_held_lines_are_handled_unregistered(self) -> None:
        first = self.server.connect()
        first.send(b"NICK alice\n")
        self.chat.answer()
        second = self.server.connect()
        second.received()
        second.send(b"NICK alice\nWHO\n")
        self.chat.answer()
        lines = second.received()
        self.assertEqual(lines[0], wire.ERR_NICK_IN_USE.rstrip(b"\n"))
        self.assertEqual(lines[1], wire.ERR_REGISTER_FIRST.rstrip(b"\n"))

    def test_a_resume_answered_later_replays_before_the_lines_after_it(self) -> None:
        alice = self.server.connect()
        alice.send(b"NICK alice\n")
        self.chat.answer()
        welcome = alice.received()[1]
        token = welcome.split(b" ")[2]
        alice.lose()
        again = self.server.connect()
        again.received()
        again.send(b"RESUME " + token + b" 1\nSAY back\n")
        self.chat.answer()
        lines = again.received()
        self.assertTrue(lines[0].startswith(b"WELCOME alice "))
        self.assertEqual(lines[-2:], [b"JOIN 3 alice", b"MSG 4 alice back"])
