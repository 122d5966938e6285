"""The server's behaviour on the wire, verb by verb, on fake transports and a fake clock."""

from __future__ import annotations

import re

from twisted.trial.unittest import SynchronousTestCase

from hbchat.testing import FakePeer, FakeServer

TOKEN = re.compile(r"[A-Za-z0-9_-]{22,}")


class GreetingTests(SynchronousTestCase):
    def test_hello_is_sent_at_once_with_the_heartbeat_settings(self) -> None:
        peer = FakeServer(ping=30, timeout=90).connect()
        self.assertEqual(peer.received(), [b"HELLO hbchat/1 ping=30 timeout=90"])

    def test_hello_writes_fractional_seconds_as_plain_decimals(self) -> None:
        peer = FakeServer(ping=0.5, timeout=2.25).connect()
        self.assertEqual(peer.received(), [b"HELLO hbchat/1 ping=0.5 timeout=2.25"])

    def test_full_server_answers_err_503_instead_of_hello_and_closes(self) -> None:
        server = FakeServer(max_clients=2)
        server.connect()
        server.connect()
        third = server.connect()
        self.assertEqual(third.received(), [b"ERR 503 server full"])
        self.assertTrue(third.closing)

    def test_a_closed_connection_frees_its_place_under_max_clients(self) -> None:
        server = FakeServer(max_clients=1)
        first = server.connect()
        first.lose()
        self.assertEqual(server.connect().received()[0][:5], b"HELLO")

    def test_refused_connection_gets_nothing_after_its_err(self) -> None:
        server = FakeServer(max_clients=1)
        server.registered("alice").sendLine("SAY hi")
        refused = server.connect()
        refused.send(b"NICK bob\n")
        self.assertEqual(refused.received(), [b"ERR 503 server full"])


class RegistrationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer()
        self.peer = self.server.connect()
        self.peer.received()

    def test_nick_is_welcomed_with_a_token_and_the_last_seq_then_joins(self) -> None:
        self.peer.sendLine("NICK alice")
        welcome, joined = self.peer.receivedText()
        verb, nick, token, seq = welcome.split(" ")
        self.assertEqual((verb, nick, seq), ("WELCOME", "alice", "0"))
        self.assertRegex(token, TOKEN)
        self.assertEqual(joined, "JOIN 1 alice")

    def test_welcome_seq_is_the_last_event_before_registration(self) -> None:
        self.server.registered("alice").sendLine("SAY one")
        self.peer.sendLine("NICK bob")
        self.assertEqual(self.peer.receivedText()[0].split(" ")[3], "2")

    def test_session_tokens_differ(self) -> None:
        other = self.server.connect()
        first = self.peer.register("alice")[0].split(b" ")[2]
        second = other.register("bob")[-2].split(b" ")[2]
        self.assertNotEqual(first, second)

    def test_verbs_are_accepted_in_any_letter_case(self) -> None:
        self.peer.sendLine("nIcK alice")
        self.assertEqual(self.peer.received()[1], b"JOIN 1 alice")

    def test_password_argument_is_accepted_while_auth_is_off(self) -> None:
        self.peer.sendLine("NICK alice secret")
        self.assertEqual(self.peer.received()[1], b"JOIN 1 alice")

    def test_nick_with_more_than_two_arguments_is_err_400(self) -> None:
        self.peer.sendLine("NICK alice secret extra")
        self.assertEqual(self.peer.received(), [b"ERR 400 usage: NICK <nick> [<password>]"])

    def test_nick_may_use_every_allowed_character(self) -> None:
        self.peer.sendLine("NICK a-Z_0[9]{x}^|")
        self.assertEqual(self.peer.received()[1], b"JOIN 1 a-Z_0[9]{x}^|")

    def test_nick_of_32_characters_is_accepted(self) -> None:
        self.peer.sendLine("NICK " + "n" * 32)
        self.assertTrue(self.peer.received()[0].startswith(b"WELCOME"))

    def test_erroneous_nicknames_are_err_432(self) -> None:
        for nick in ["n" * 33, "al ice", "al.ice", "élise", "", "a*b", "a\tb"]:
            self.peer.sendLine("NICK " + nick if nick != "al ice" else "NICK al@ice")
            self.assertEqual(self.peer.received(), [b"ERR 432 erroneous nickname"], nick)

    def test_bare_nick_command_is_err_432(self) -> None:
        self.peer.sendLine("NICK")
        self.assertEqual(self.peer.received(), [b"ERR 432 erroneous nickname"])

    def test_nick_in_use_regardless_of_case_is_err_433(self) -> None:
        self.server.registered("Alice")
        self.peer.sendLine("NICK aLICE")
        self.assertEqual(self.peer.received(), [b"ERR 433 nick in use"])

    def test_nick_is_free_again_after_its_owner_quit(self) -> None:
        alice = self.server.registered("alice")
        alice.sendLine("QUIT")
        self.peer.sendLine("NICK alice")
        self.assertTrue(self.peer.received()[0].startswith(b"WELCOME alice "))

    def test_second_nick_after_registration_is_err_400(self) -> None:
        self.peer.register("alice")
        self.peer.sendLine("NICK bob")
        self.assertEqual(self.peer.received(), [b"ERR 400 already registered"])

    def test_commands_before_registration_are_err_403(self) -> None:
        for line in ["SAY hi", "WHO", "TELL bob hi", "FROB"]:
            self.peer.sendLine(line)
            self.assertEqual(self.peer.received(), [b"ERR 403 register first"], line)

    def test_ping_before_registration_is_answered(self) -> None:
        self.peer.sendLine("PING early")
        self.assertEqual(self.peer.received(), [b"PONG early"])

    def test_pong_before_registration_is_ignored(self) -> None:
        self.peer.sendLine("PONG 1")
        self.assertEqual(self.peer.received(), [])

    def test_quit_before_registration_says_bye(self) -> None:
        self.peer.sendLine("QUIT")
        self.assertEqual(self.peer.received(), [b"BYE quit"])
        self.assertTrue(self.peer.closing)

    def test_no_registration_within_the_deadline_is_err_408_and_close(self) -> None:
        server = FakeServer(register_timeout=10)
        peer = server.connect()
        peer.received()
        server.advance(9.9)
        self.assertEqual(peer.received(), [])
        server.advance(0.1)
        self.assertEqual(peer.received(), [b"ERR 408 registration timeout"])
        self.assertTrue(peer.closing)
        self.assertFalse(peer.aborted)

    def test_registration_deadline_counts_from_the_connection_not_from_traffic(self) -> None:
        server = FakeServer(register_timeout=10)
        peer = server.connect()
        peer.received()
        for _ in range(3):
            server.advance(3)
            peer.sendLine("PING still deciding")
        self.assertFalse(peer.closing)
        server.advance(1)
        self.assertEqual(peer.received()[-1], b"ERR 408 registration timeout")
        self.assertTrue(peer.closing)

    def test_a_stall_does_not_extend_the_registration_deadline(self) -> None:
        server = FakeServer(register_timeout=10)
        peer = server.connect()
        peer.received()
        server.advance(20)
        peer.protocol.dataReceived(b"PING still deciding\n")
        server.turn()
        self.assertIn(b"ERR 408 registration timeout", peer.received())

    def test_a_registration_waiting_behind_a_stall_is_honoured(self) -> None:
        server = FakeServer(register_timeout=10)
        peer = server.connect()
        peer.received()
        server.advance(20)
        peer.protocol.dataReceived(b"NICK late\n")
        server.turn()
        self.assertFalse(peer.closing)
        self.assertTrue(peer.received()[0].startswith(b"WELCOME late"))

    def test_registration_switches_to_the_idle_timeout(self) -> None:
        server = FakeServer(register_timeout=10, ping=30, timeout=90)
        peer = server.connect()
        peer.register("alice")
        server.advance(60)
        peer.sendLine("PONG 1")
        server.advance(60)
        self.assertFalse(peer.closing)


class ChatTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer()
        self.alice = self.server.registered("alice")
        self.bob = self.server.registered("Bob")
        self.alice.received()

    def test_say_reaches_everyone_sender_included(self) -> None:
        self.alice.sendLine("SAY hello there")
        self.assertEqual(self.alice.received(), [b"MSG 3 alice hello there"])
        self.assertEqual(self.bob.received(), [b"MSG 3 alice hello there"])

    def test_say_keeps_the_text_byte_for_byte(self) -> None:
        self.alice.send("say  two  spaces ünïcode \r\n".encode())
        self.assertEqual(self.bob.receivedText(), ["MSG 3 alice  two  spaces ünïcode "])

    def test_say_without_text_is_err_400_empty_message(self) -> None:
        for line in ["SAY", "SAY "]:
            self.alice.sendLine(line)
            self.assertEqual(self.alice.received(), [b"ERR 400 empty message"])
        self.assertEqual(self.bob.received(), [])

    def test_every_event_takes_the_next_seq(self) -> None:
        self.alice.sendLine("SAY one")
        carol = self.server.registered("carol")
        carol.sendLine("SAY two")
        carol.sendLine("QUIT")
        self.assertEqual(
            self.bob.received(),
            [b"MSG 3 alice one", b"JOIN 4 carol", b"MSG 5 carol two", b"LEFT 6 carol quit"],
        )

    def test_messages_show_the_nick_as_registered(self) -> None:
        self.bob.sendLine("SAY hi")
        self.assertEqual(self.alice.received(), [b"MSG 3 Bob hi"])

    def test_newcomer_gets_welcome_then_its_own_join_and_others_get_the_join(self) -> None:
        carol = self.server.connect()
        carol.received()
        carol.sendLine("NICK carol")
        self.assertEqual(carol.received()[1:], [b"JOIN 3 carol"])
        self.assertEqual(self.alice.received(), [b"JOIN 3 carol"])

    def test_tell_reaches_only_its_target_matched_regardless_of_case(self) -> None:
        carol = self.server.registered("carol")
        self.alice.received()
        self.bob.received()
        self.alice.sendLine("TELL bob psst, a secret")
        self.assertEqual(self.bob.received(), [b"PRIV alice psst, a secret"])
        self.assertEqual(self.alice.received(), [])
        self.assertEqual(carol.received(), [])

    def test_tell_to_an_unknown_nick_is_err_406(self) -> None:
        self.alice.sendLine("TELL nobody hello")
        self.assertEqual(self.alice.received(), [b"ERR 406 no such nick"])

    def test_tell_without_text_is_err_400_empty_message(self) -> None:
        for line in ["TELL bob", "TELL bob ", "TELL"]:
            self.alice.sendLine(line)
            self.assertEqual(self.alice.received(), [b"ERR 400 empty message"], line)

    def test_tell_takes_no_seq(self) -> None:
        self.alice.sendLine("TELL bob hi")
        self.alice.sendLine("SAY next")
        self.assertEqual(self.alice.received(), [b"MSG 3 alice next"])

    def test_who_lists_everyone_sorted_regardless_of_case(self) -> None:
        self.server.registered("carol")
        self.server.registered("ADAM")
        self.alice.sendLine("WHO")
        self.assertEqual(self.alice.received()[-1], b"USERS ADAM alice Bob carol")

    def test_who_does_not_list_unregistered_connections(self) -> None:
        self.server.connect()
        self.alice.sendLine("who")
        self.assertEqual(self.alice.received(), [b"USERS alice Bob"])

    def test_quit_says_bye_closes_and_announces_left_quit(self) -> None:
        self.bob.sendLine("QUIT see you later")
        self.assertEqual(self.bob.received(), [b"BYE quit"])
        self.assertTrue(self.bob.closing)
        self.assertFalse(self.bob.aborted)
        self.assertEqual(self.alice.received(), [b"LEFT 3 Bob quit"])

    def test_nothing_is_sent_after_bye(self) -> None:
        self.bob.send(b"QUIT\nSAY ghost\nWHO\n")
        self.alice.sendLine("SAY still here")
        self.assertEqual(self.bob.received(), [b"BYE quit"])
        self.assertEqual(self.alice.received(), [b"LEFT 3 Bob quit", b"MSG 4 alice still here"])

    def test_output_queued_in_the_same_turn_precedes_bye(self) -> None:
        self.alice.protocol.dataReceived(b"SAY last words\n")
        self.bob.protocol.dataReceived(b"QUIT\n")
        self.assertEqual(self.bob.received(), [b"MSG 3 alice last words", b"BYE quit"])

    def test_connection_lost_without_quit_is_left_error(self) -> None:
        self.bob.lose()
        self.assertEqual(self.alice.received(), [b"LEFT 3 Bob error"])

    def test_unknown_verb_is_err_400_naming_it_in_upper_case(self) -> None:
        self.alice.sendLine("frobnicate now")
        self.assertEqual(self.alice.received(), [b"ERR 400 unknown command FROBNICATE"])

    def test_empty_lines_are_ignored(self) -> None:
        self.alice.send(b"\n\r\n\n")
        self.assertEqual(self.alice.received(), [])

    def test_invalid_utf8_is_err_400_and_the_connection_stays_open(self) -> None:
        self.alice.send(b"SAY \xff\xfe\n")
        self.assertEqual(self.alice.received(), [b"ERR 400 invalid UTF-8"])
        self.alice.sendLine("SAY fine")
        self.assertEqual(self.alice.received(), [b"MSG 3 alice fine"])
        self.assertFalse(self.alice.closing)

    def test_lines_split_across_reads_are_reassembled(self) -> None:
        for piece in [b"S", b"AY hel", b"lo\r", b"\nSAY again\n"]:
            self.alice.send(piece)
        self.assertEqual(self.bob.received(), [b"MSG 3 alice hello", b"MSG 4 alice again"])

    def test_many_lines_in_one_read_are_handled_in_order(self) -> None:
        self.alice.send(b"SAY 1\nSAY 2\nWHO\nSAY 3\n")
        self.assertEqual(
            self.alice.received(),
            [b"MSG 3 alice 1", b"MSG 4 alice 2", b"USERS alice Bob", b"MSG 5 alice 3"],
        )

    def test_one_turn_of_output_is_one_write(self) -> None:
        writes: list[bytes] = []
        self.bob.protocol._write = writes.append
        self.alice.protocol.dataReceived(b"SAY 1\nSAY 2\n")
        self.bob.protocol.dataReceived(b"PING x\nSAY 3\n")
        self.server.turn()
        self.assertEqual(writes, [b"MSG 3 alice 1\nMSG 4 alice 2\nPONG x\nMSG 5 Bob 3\n"])


class LineLimitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer(max_line=10)
        self.alice = self.server.registered("alice")
        self.bob = self.server.registered("bob")
        self.alice.received()

    def test_line_at_the_limit_is_accepted(self) -> None:
        self.bob.send(b"SAY 123456\n")
        self.assertEqual(self.alice.received(), [b"MSG 3 bob 123456"])

    def test_line_at_the_limit_with_crlf_is_accepted(self) -> None:
        self.bob.send(b"SAY 123456\r\n")
        self.assertEqual(self.alice.received(), [b"MSG 3 bob 123456"])

    def test_longer_line_is_err_413_and_close(self) -> None:
        self.bob.send(b"SAY 1234567\n")
        self.assertEqual(self.bob.received(), [b"ERR 413 line too long"])
        self.assertTrue(self.bob.closing)

    def test_err_413_comes_as_soon_as_unterminated_input_exceeds_the_limit(self) -> None:
        self.bob.send(b"SAY 123456")
        self.assertEqual(self.bob.received(), [])
        self.bob.send(b"78")
        self.assertEqual(self.bob.received(), [b"ERR 413 line too long"])

    def test_a_possible_cr_at_the_limit_is_waited_for(self) -> None:
        self.bob.send(b"SAY 123456\r")
        self.assertEqual(self.bob.received(), [])
        self.bob.send(b"\n")
        self.assertEqual(self.alice.received(), [b"MSG 3 bob 123456"])

    def test_lines_before_the_long_one_are_handled_and_nothing_after(self) -> None:
        self.bob.send(b"SAY ok\nSAY 1234567890\nSAY never\n")
        self.assertEqual(self.bob.received(), [b"MSG 3 bob ok", b"ERR 413 line too long"])
        self.assertEqual(self.alice.received(), [b"MSG 3 bob ok", b"LEFT 4 bob error"])

    def test_long_line_before_registration_is_err_413(self) -> None:
        peer = self.server.connect()
        peer.received()
        peer.send(b"x" * 11)
        self.assertEqual(peer.received(), [b"ERR 413 line too long"])

    def test_buffered_input_never_exceeds_the_limit(self) -> None:
        peer = self.server.connect()
        peer.send(b"x" * 5)
        peer.send(b"y" * 5)
        self.assertLessEqual(len(peer.protocol._framer._pending), 11)


class HeartbeatTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer(ping=30, timeout=90)
        self.alice = self.server.registered("alice")
        self.bob = self.server.registered("bob")
        self.alice.received()
        self.bob.received()

    def test_ping_is_sent_at_every_interval(self) -> None:
        for expected in [b"PING 1", b"PING 2", b"PING 3"]:
            self.server.advance(29.9)
            self.assertEqual(self.pings(self.alice), [])
            self.server.advance(0.1)
            self.assertEqual(self.pings(self.alice), [expected])
            self.alice.sendLine(expected.replace(b"PING", b"PONG"))

    def pings(self, peer: FakePeer) -> list[bytes]:
        return [line for line in peer.received() if line.startswith(b"PING")]

    def test_unanswered_pings_keep_coming_until_the_timeout(self) -> None:
        self.server.clock.pump([1.0] * 89)
        self.assertEqual(self.alice.received(), [b"PING 1", b"PING 2"])

    def test_ping_is_skipped_when_the_peer_spoke_during_the_interval(self) -> None:
        self.server.advance(20)
        self.alice.sendLine("SAY busy")
        self.server.advance(10)
        self.assertEqual(self.alice.received(), [b"MSG 3 alice busy"])
        self.server.advance(30)
        self.assertEqual(self.alice.received(), [b"PING 1"])

    def test_pong_measures_the_round_trip(self) -> None:
        self.server.advance(30)
        self.alice.received()
        self.server.advance(0.25)
        self.alice.sendLine("PONG 1")
        self.assertEqual(self.alice.protocol.rtt, 0.25)

    def test_pong_with_a_stale_token_does_not_measure(self) -> None:
        self.server.advance(30)
        self.alice.sendLine("PONG 99")
        self.assertIsNone(self.alice.protocol.rtt)

    def test_client_ping_is_answered_with_the_same_token(self) -> None:
        self.alice.sendLine("PING 1700000000123 extra words")
        self.assertEqual(self.alice.received(), [b"PONG 1700000000123 extra words"])

    def test_bare_ping_gets_bare_pong(self) -> None:
        self.alice.sendLine("ping")
        self.assertEqual(self.alice.received(), [b"PONG"])

    def test_peer_that_only_answers_pings_stays_alive_even_with_a_tight_timeout(self) -> None:
        server = FakeServer(ping=2, timeout=3)
        peer = server.registered("carol")
        for _ in range(80):
            server.advance(0.25)
            for line in peer.received():
                if line.startswith(b"PING"):
                    peer.sendLine(b"PONG" + line[4:])
        self.assertFalse(peer.closing)

    def test_ping_is_not_skipped_when_its_successor_would_come_too_late(self) -> None:
        # ping 2, timeout 3: a line right after PING 1 must not excuse PING 2, or a peer
        # that only answers PINGs would be asked next at t=6, after its timeout at t=5.
        server = FakeServer(ping=2, timeout=3)
        peer = server.registered("carol")
        server.advance(2)
        self.assertEqual(peer.received(), [b"PING 1"])
        peer.sendLine("PONG 1")
        peer.sendLine("SAY hi")
        server.advance(2)
        self.assertEqual(peer.received(), [b"MSG 2 carol hi", b"PING 2"])

    def test_peer_that_says_something_then_only_answers_pings_is_never_cut(self) -> None:
        for ping, timeout in [(2, 3), (1, 1.5), (30, 31), (30, 90)]:
            server = FakeServer(ping=ping, timeout=timeout)
            peer = server.registered("carol")
            step = ping / 8
            for tick in range(200):
                server.advance(step)
                for line in peer.received():
                    if line.startswith(b"PING"):
                        peer.sendLine(b"PONG" + line[4:])
                        if tick % 3 == 0:
                            peer.sendLine("SAY still here")
            self.assertFalse(peer.closing, (ping, timeout))

    def test_a_peer_that_falls_silent_is_asked_in_time_though_pingers_tick_late(self) -> None:
        # The pingers share a clock of 10 ms ticks (hbchat.coarseclock), so a PING may go
        # out up to 10 ms after its time; an interval off that grid makes the lateness of
        # one tick differ from the next.  However the last line falls, the PING after it
        # must leave the peer half an interval to answer: never a verdict put off to ask.
        for heard in range(0, 1005, 7):
            server = FakeServer(ping=1.005, timeout=2.5)
            peer = server.registered("carol")
            server.clock.pump([0.001] * (1000 + heard))
            peer.sendLine("SAY last words")
            server.clock.pump([0.001] * 4000)
            self.assertTrue(peer.aborted, heard)
            self.assertEqual(server.factory.askedVerdicts, 0, heard)

    def test_silent_peer_is_aborted_at_the_timeout_on_the_next_reactor_turn(self) -> None:
        self.server.clock.pump([1.0] * 89 + [0.999])
        self.server.turn()
        self.assertFalse(self.bob.closing)
        self.server.advance(0.001)
        self.server.turn()
        self.assertTrue(self.bob.aborted)

    def test_data_waiting_behind_a_server_stall_spares_the_peer(self) -> None:
        # The reactor was stalled for twice the timeout: bob's timer fires first, and his
        # line, already in the socket, is read in the next turn, before the verdict.
        self.alice.sendLine("PONG")
        self.server.advance(180)
        self.bob.protocol.dataReceived(b"PONG 1\n")
        self.server.turn()
        self.assertFalse(self.bob.closing)
        self.assertEqual(self.server.factory.sparedVerdicts, 1)
        self.server.clock.pump([1] * 89)
        self.assertFalse(self.bob.closing)

    def test_a_silent_peer_is_not_spared_by_a_stall(self) -> None:
        self.server.advance(180)
        self.server.turn()
        self.server.advance(30)
        self.server.turn()
        self.assertTrue(self.bob.aborted)
        self.assertEqual(self.server.factory.sparedVerdicts, 0)

    def test_after_a_stall_a_peer_never_pinged_meanwhile_is_pinged_before_it_is_judged(self) -> None:
        # No PING went out during the stall: bob, who only answers PINGs, had nothing to
        # answer. The pinger's PING on waking is the question; no second one is needed.
        self.alice.sendLine("PONG")
        self.server.advance(180)
        self.server.turn()
        self.assertFalse(self.bob.closing)
        self.assertEqual(self.bob.received(), [b"PING 1"])
        self.assertEqual(self.server.factory.askedVerdicts, 2)  # alice too

    def test_a_peer_that_answers_the_ping_after_a_stall_is_spared(self) -> None:
        self.server.advance(180)
        self.server.turn()
        self.server.advance(0.01)
        self.bob.sendLine(b"PONG 1")
        self.server.advance(29.99)
        self.server.turn()
        self.assertFalse(self.bob.closing)
        self.assertEqual(self.server.factory.sparedVerdicts, 1)
        # and it lives on as before, answering PINGs
        for _ in range(20):
            self.server.advance(10)
            for line in self.bob.received():
                if line.startswith(b"PING"):
                    self.bob.sendLine(b"PONG" + line[4:])
        self.assertFalse(self.bob.closing)

    def test_a_dead_peer_is_cut_one_ping_interval_after_the_stall(self) -> None:
        self.server.advance(180)
        self.server.turn()
        self.server.advance(29.999)
        self.server.turn()
        self.assertFalse(self.bob.closing)
        self.server.advance(0.001)
        self.server.turn()
        self.assertTrue(self.bob.aborted)

    def test_a_stall_that_ends_when_the_timer_fires_but_before_the_pinger_pings_at_once(self) -> None:
        # The idle timer is due before the pinger's next round: the verdict itself asks.
        server = FakeServer(ping=30, timeout=45)
        peer = server.registered("carol")
        peer.received()
        server.clock.pump([1.0] * 29)  # no PING yet: the first is due at 30
        server.advance(16)  # stall: the pinger (30) and the idle timer (45) fire together
        server.turn()
        self.assertEqual([line for line in peer.received() if line.startswith(b"PING")], [b"PING 1"])
        self.assertFalse(peer.closing)
        server.advance(30)
        server.turn()
        self.assertTrue(peer.aborted)

    def test_a_server_on_time_judges_at_the_timeout_even_when_it_is_short(self) -> None:
        for ping, timeout in [(1.0, 1.2), (1.0, 1.5), (2.0, 3.0), (30.0, 31.0)]:
            server = FakeServer(ping=ping, timeout=timeout)
            peer = server.registered("carol")
            heard = server.clock.seconds()
            server.clock.pump([0.01] * round(timeout / 0.01 - 2))
            server.advance(heard + timeout - 0.001 - server.clock.seconds())
            server.turn()
            self.assertFalse(peer.closing, (ping, timeout))
            server.advance(0.001)
            server.turn()
            self.assertTrue(peer.aborted, (ping, timeout))
            self.assertEqual(server.factory.askedVerdicts, 0)

    def test_timed_out_peer_is_announced_left_timeout(self) -> None:
        self.server.advance(60)
        self.alice.sendLine("SAY still here")
        self.server.advance(30)
        self.server.turn()
        self.bob.finishClose()
        self.assertIn(b"LEFT 4 bob timeout", self.alice.received())

    def test_timed_out_peer_gets_no_word(self) -> None:
        self.server.advance(90)
        self.assertEqual([line for line in self.bob.received() if not line.startswith(b"PING")], [])

    def test_any_traffic_postpones_the_timeout(self) -> None:
        for _ in range(5):
            self.server.advance(80)
            self.bob.send(b"\n")
        self.assertFalse(self.bob.closing)
        self.server.clock.pump([1.0] * 90)
        self.server.turn()
        self.assertTrue(self.bob.aborted)

    def test_a_partial_line_is_traffic_too(self) -> None:
        self.server.advance(80)
        self.bob.send(b"SA")
        self.server.advance(80)
        self.assertFalse(self.bob.closing)

    def test_pinging_and_the_idle_timer_stop_when_the_connection_is_gone(self) -> None:
        self.bob.lose()
        self.server.advance(300)
        self.assertEqual(self.bob.transport.value(), b"")
        self.assertIsNone(self.bob.protocol._pinger)
        self.assertIsNone(self.bob.protocol.timeOut)

    def test_unregistered_connections_are_not_pinged(self) -> None:
        server = FakeServer(ping=1, timeout=3, register_timeout=10)
        peer = server.connect()
        peer.received()
        server.advance(5)
        self.assertEqual(peer.received(), [])


class ShutdownTests(SynchronousTestCase):
    def test_shutdown_says_bye_to_everyone_registered_or_not(self) -> None:
        server = FakeServer()
        alice = server.registered("alice")
        stranger = server.connect()
        stranger.received()
        done = server.factory.shutdown()
        for peer in (alice, stranger):
            lines = peer.received()
            self.assertEqual(len(lines), 1, lines)
            self.assertRegex(lines[0], rb"^BYE shutdown retry=10 at=[0-9.]+$")
        self.assertNoResult(done)
        alice.finishClose()
        stranger.finishClose()
        self.successResultOf(done)

    def test_shutdown_announces_no_departures(self) -> None:
        server = FakeServer()
        alice = server.registered("alice")
        bob = server.registered("bob")
        alice.received()
        server.factory.shutdown()
        bob.finishClose()
        self.assertEqual([line.split(b" at=")[0] for line in alice.received()], [b"BYE shutdown retry=10"])

    def test_peer_that_does_not_read_is_aborted_after_the_close_grace(self) -> None:
        server = FakeServer()
        alice = server.registered("alice")
        server.factory.shutdown()
        self.assertFalse(alice.aborted)
        server.advance(3)
        self.assertTrue(alice.aborted)

    def test_shutdown_with_no_connections_is_immediate(self) -> None:
        self.successResultOf(FakeServer().factory.shutdown())

    def test_connections_arriving_during_shutdown_are_refused(self) -> None:
        server = FakeServer()
        server.registered("alice")
        server.factory.shutdown()
        late = server.connect()
        self.assertEqual(late.received(), [b"ERR 503 server full"])


class PeerTests(SynchronousTestCase):
    def test_peer_is_described_by_address(self) -> None:
        peer: FakePeer = FakeServer().connect()
        self.assertRegex(peer.protocol.peer, r"^127\.0\.0\.1:\d+$")


class WhoBurstTests(SynchronousTestCase):
    def test_a_burst_of_who_shares_one_users_line(self) -> None:
        server = FakeServer(rate=0)  # a thousand WHOs at once: far over any rate limit
        peers = [server.registered(f"user{n}") for n in range(50)]
        asker = peers[0]
        asker.received()
        asker.protocol.dataReceived(b"SAY x\n" + b"WHO\n" * 1000)
        queued = server.factory.chat.fanout._direct[asker.protocol]
        self.assertEqual(len({id(data) for _, data in queued}), 1)
        self.assertEqual(asker.received()[-1], server.factory.chat.who().rstrip(b"\n"))


class PerAddressLimitTests(SynchronousTestCase):
    def test_connections_beyond_the_per_address_limit_get_err_503(self) -> None:
        from twisted.internet.address import IPv4Address

        from hbchat.testing import RecordingTransport

        server = FakeServer(max_per_ip=2)
        transports = []
        for port in range(3):
            transport = RecordingTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 40000 + port))
            protocol = server.factory.buildProtocol(transport.getPeer())
            protocol.makeConnection(transport)
            transports.append((protocol, transport))
        server.turn()
        self.assertTrue(transports[0][1].value().startswith(b"HELLO"))
        self.assertEqual(transports[2][1].value(), b"ERR 503 too many connections from your address\n")
        # A closed connection frees its place.
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        transports[0][0].connectionLost(Failure(ConnectionDone()))
        transport = RecordingTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 40009))
        protocol = server.factory.buildProtocol(transport.getPeer())
        protocol.makeConnection(transport)
        self.assertTrue(transport.value().startswith(b"HELLO"))

    def test_loopback_is_exempt(self) -> None:
        server = FakeServer(max_per_ip=1)
        peers = [server.connect() for _ in range(3)]  # FakePeers come from 127.0.0.1
        self.assertTrue(all(peer.received()[0].startswith(b"HELLO") for peer in peers))
