"""RESUME: sessions outlive dropped connections for a grace period and replay what was missed."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from hbchat.testing import FakePeer, FakeServer


def token_and_seq(welcome: bytes) -> tuple[bytes, int]:
    verb, _nick, token, seq = welcome.split(b" ")
    assert verb == b"WELCOME", welcome
    return token, int(seq)


class ResumeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer(history=5, grace=120, ping=30, timeout=90)
        self.alice = self.server.registered("alice")
        self.bob = self.server.connect()
        self.bob.received()
        self.token, _ = token_and_seq(self.bob.register("bob")[0])
        self.alice.received()

    def reconnect(self) -> FakePeer:
        peer = self.server.connect()
        peer.received()
        return peer

    def test_resume_replays_missed_events_then_announces_resumed_complete(self) -> None:
        self.bob.sendLine("SAY before")  # seq 3
        self.bob.lose()  # LEFT 4 bob error
        self.alice.sendLine("SAY while you were away")  # seq 5
        back = self.reconnect()
        back.sendLine(b"RESUME " + self.token + b" 3")
        self.assertEqual(
            back.received(),
            [
                b"WELCOME bob " + self.token + b" 5",
                b"LEFT 4 bob error",
                b"MSG 5 alice while you were away",
                b"RESUMED 2 complete",
                b"JOIN 6 bob",
            ],
        )
        self.assertEqual(
            self.alice.received(),
            [b"MSG 3 bob before", b"LEFT 4 bob error", b"MSG 5 alice while you were away", b"JOIN 6 bob"],
        )

    def test_resume_after_a_timeout_works_too(self) -> None:
        self.server.clock.pump([10] * 6)
        self.alice.sendLine("PONG")
        self.server.clock.pump([10] * 3)
        self.server.turn()
        self.assertTrue(self.bob.aborted)
        self.bob.finishClose()
        back = self.reconnect()
        back.sendLine(b"RESUME " + self.token + b" 2")
        lines = back.received()
        self.assertIn(b"LEFT 3 bob timeout", lines)
        self.assertEqual(lines[-2:], [b"RESUMED 1 complete", b"JOIN 4 bob"])

    def test_resume_with_events_gone_from_history_is_partial(self) -> None:
        self.bob.lose()
        for n in range(10):
            self.alice.sendLine(f"SAY {n}")
        back = self.reconnect()
        back.sendLine(b"RESUME " + self.token + b" 2")
        lines = back.received()
        self.assertEqual(lines[1:6], [b"MSG %d alice %d" % (seq, seq - 4) for seq in range(9, 14)])
        self.assertEqual(lines[6], b"RESUMED 5 partial")

    def test_resume_with_nothing_missed_replays_nothing(self) -> None:
        self.bob.lose()
        back = self.reconnect()
        back.sendLine(b"RESUME " + self.token + b" 3")
        self.assertEqual(back.received()[1:], [b"RESUMED 0 complete", b"JOIN 4 bob"])

    def test_resumed_user_can_chat_with_the_same_nick(self) -> None:
        self.bob.lose()
        back = self.reconnect()
        back.sendLine(b"RESUME " + self.token + b" 3")
        back.received()
        back.sendLine("SAY I am back")
        self.assertEqual(back.received(), [b"MSG 5 bob I am back"])

    def test_welcome_after_resume_carries_the_same_token(self) -> None:
        self.bob.lose()
        back = self.reconnect()
        back.sendLine(b"resume " + self.token + b" 0")
        self.assertEqual(token_and_seq(back.received()[0])[0], self.token)

    def test_nick_is_reserved_during_grace(self) -> None:
        self.bob.lose()
        thief = self.reconnect()
        thief.sendLine("NICK BOB")
        self.assertEqual(thief.received(), [b"ERR 433 nick in use"])

    def test_session_in_grace_is_not_listed_by_who_nor_reachable_by_tell(self) -> None:
        self.bob.lose()
        self.alice.received()
        self.alice.sendLine("WHO")
        self.alice.sendLine("TELL bob are you there")
        self.assertEqual(self.alice.received(), [b"USERS alice", b"ERR 406 no such nick"])

    def test_expired_session_is_unknown_and_its_nick_free(self) -> None:
        self.bob.lose()
        self.server.advance(120)
        back = self.reconnect()
        back.sendLine(b"RESUME " + self.token + b" 3")
        self.assertEqual(back.received(), [b"ERR 404 unknown session"])
        back.sendLine("NICK bob")
        self.assertTrue(back.received()[0].startswith(b"WELCOME bob"))

    def test_unknown_token_is_err_404(self) -> None:
        peer = self.reconnect()
        peer.sendLine("RESUME notatoken 0")
        self.assertEqual(peer.received(), [b"ERR 404 unknown session"])

    def test_quit_kills_the_session_at_once(self) -> None:
        self.bob.sendLine("QUIT")
        back = self.reconnect()
        back.sendLine(b"RESUME " + self.token + b" 0")
        self.assertEqual(back.received(), [b"ERR 404 unknown session"])
        back.sendLine("NICK bob")
        self.assertTrue(back.received()[0].startswith(b"WELCOME bob"))

    def test_malformed_resume_is_err_400(self) -> None:
        peer = self.reconnect()
        for line in [
            b"RESUME",
            b"RESUME " + self.token,
            b"RESUME " + self.token + b" x",
            b"RESUME " + self.token + b" -1",
            b"RESUME " + self.token + b" 1 2",
        ]:
            peer.sendLine(line)
            self.assertEqual(peer.received(), [b"ERR 400 usage: RESUME <session-token> <last-seq>"], line)

    def test_resume_when_registered_is_err_400(self) -> None:
        self.alice.sendLine(b"RESUME " + self.token + b" 0")
        self.assertEqual(self.alice.received(), [b"ERR 400 already registered"])

    def test_resume_of_a_live_session_takes_it_over_quietly(self) -> None:
        back = self.reconnect()
        back.sendLine(b"RESUME " + self.token + b" 2")
        self.assertEqual(self.bob.received(), [b"BYE replaced"])
        self.assertTrue(self.bob.closing)
        self.assertEqual(back.received(), [b"WELCOME bob " + self.token + b" 2", b"RESUMED 0 complete"])
        self.bob.finishClose()
        self.alice.sendLine("SAY hi bob")
        self.assertEqual(self.alice.received(), [b"MSG 3 alice hi bob"])
        self.assertEqual(back.received(), [b"MSG 3 alice hi bob"])

    def test_replaced_connection_gets_nothing_after_bye(self) -> None:
        back = self.reconnect()
        back.sendLine(b"RESUME " + self.token + b" 2")
        self.bob.received()
        self.alice.sendLine("SAY later")
        self.assertEqual(self.bob.received(), [])

    def test_own_messages_are_replayed_so_the_client_can_tell_what_arrived(self) -> None:
        self.bob.send(b"SAY one\nSAY two\n")
        self.bob.lose()
        back = self.reconnect()
        back.sendLine(b"RESUME " + self.token + b" 2")
        self.assertEqual(back.received()[1:3], [b"MSG 3 bob one", b"MSG 4 bob two"])

    def test_shutdown_tells_clients_when_to_retry(self) -> None:
        server = FakeServer(retry_hint=2.5)
        peer = server.registered("carol")
        server.factory.shutdown()
        self.assertEqual([line.split(b" at=")[0] for line in peer.received()], [b"BYE shutdown retry=2.5"])


class HugeNumberTests(SynchronousTestCase):
    """``<last-seq>`` is any non-negative decimal number, however many digits it has."""

    def setUp(self) -> None:
        self.server = FakeServer(history=5, grace=120, ping=30, timeout=90, max_line=8000)
        self.alice = self.server.registered("alice")
        bob = self.server.connect()
        bob.received()
        self.token, _ = token_and_seq(bob.register("bob")[0])
        bob.lose()
        self.alice.received()
        self.back = self.server.connect()
        self.back.received()

    def test_a_21_digit_last_seq_ahead_of_the_chat_replays_nothing_and_is_complete(self) -> None:
        self.back.sendLine(b"RESUME " + self.token + b" " + b"1" * 21)
        self.assertEqual(
            self.back.received(),
            [b"WELCOME bob " + self.token + b" 3", b"RESUMED 0 complete", b"JOIN 4 bob"],
        )

    def test_a_last_seq_of_thousands_of_digits_is_not_an_exception(self) -> None:
        self.back.sendLine(b"RESUME " + self.token + b" " + b"9" * 5000)
        self.assertEqual(self.back.received()[1:], [b"RESUMED 0 complete", b"JOIN 4 bob"])

    def test_leading_zeros_do_not_change_the_number(self) -> None:
        self.back.sendLine(b"RESUME " + self.token + b" " + b"0" * 30 + b"2")
        self.assertEqual(self.back.received()[1:], [b"LEFT 3 bob error", b"RESUMED 1 complete", b"JOIN 4 bob"])

    def test_a_huge_last_seq_with_an_unknown_token_is_err_404(self) -> None:
        self.back.sendLine(b"RESUME token " + b"9" * 5000)
        self.assertEqual(self.back.received(), [b"ERR 404 unknown session"])
