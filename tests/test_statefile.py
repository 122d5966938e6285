"""The ``--state`` file's format (hbchat.server.statefile): pure bytes in and out, no reactor."""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from hbchat.server.statefile import FORMAT, VERSION, ChatState, SessionRecord, StateFileError, decode, encode

STATE = ChatState(
    seq=42,
    history=(b"MSG 40 alice hello \xe2\x9c\x93\n", b"JOIN 41 bob\n", b"LEFT 42 carol timeout\n"),
    sessions=(
        SessionRecord(b"alice", b"tokA-_x", 1764920120.5, None),
        SessionRecord(b"bob", b"tokB", 1764920010.25, "192.0.2.7"),
    ),
    saved_at=1764920000.5,
)


def document(**changes: object) -> bytes:
    """The bytes of STATE with some top-level fields changed (``None``: removed)."""
    data = json.loads(encode(STATE))
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    return json.dumps(data).encode()


class FormatTests(SynchronousTestCase):
    def assertRefused(self, data: bytes, words: str) -> None:
        with self.assertRaises(StateFileError) as caught:
            decode(data)
        self.assertIn(words, str(caught.exception))
        self.assertNotIn("\n", str(caught.exception))

    def test_round_trip_keeps_everything(self) -> None:
        self.assertEqual(decode(encode(STATE)), STATE)

    def test_an_empty_chat_round_trips(self) -> None:
        self.assertEqual(decode(encode(ChatState())), ChatState())

    def test_bytes_that_are_not_utf8_survive(self) -> None:
        state = ChatState(seq=1, history=(b"MSG 1 alice \xff\xfe\n",))
        self.assertEqual(decode(encode(state)), state)

    def test_the_file_carries_its_format_and_version(self) -> None:
        data = json.loads(encode(STATE))
        self.assertEqual((data["format"], data["version"]), (FORMAT, VERSION))

    def test_history_is_stored_without_line_endings(self) -> None:
        self.assertEqual(json.loads(encode(STATE))["history"][1], "JOIN 41 bob")

    def test_truncated_file_is_refused(self) -> None:
        data = encode(STATE)
        self.assertRefused(data[: len(data) // 2], "not JSON")

    def test_empty_file_is_refused(self) -> None:
        self.assertRefused(b"", "not JSON")

    def test_binary_garbage_is_refused(self) -> None:
        self.assertRefused(b"\x00\xff\x13garbage", "not JSON")

    def test_foreign_json_is_refused(self) -> None:
        self.assertRefused(b'{"name": "something else", "seq": 3}', "not an hbchat state file")

    def test_json_that_is_not_an_object_is_refused(self) -> None:
        self.assertRefused(b"[1, 2, 3]", "not an hbchat state file")

    def test_another_version_is_refused(self) -> None:
        self.assertRefused(document(version=VERSION + 1), f"version {VERSION + 1}")

    def test_missing_version_is_refused(self) -> None:
        self.assertRefused(document(version=None), "version None")

    def test_negative_seq_is_refused(self) -> None:
        self.assertRefused(document(seq=-1), "seq")

    def test_seq_that_is_not_a_number_is_refused(self) -> None:
        self.assertRefused(document(seq="42"), "seq")

    def test_more_history_than_events_is_refused(self) -> None:
        self.assertRefused(document(seq=2), "more than seq 2")

    def test_history_with_a_line_break_is_refused(self) -> None:
        self.assertRefused(document(history=["MSG 42 a b\nMSG 43 a c"]), "line break")

    def test_json_nested_deeper_than_the_parser_goes_is_refused(self) -> None:
        self.assertRefused(b"[" * 200_000, "not JSON")

    def test_history_that_is_not_events_is_refused(self) -> None:
        self.assertRefused(document(history=["x"]), "history event 0 is not a MSG, JOIN or LEFT numbered 42")

    def test_history_numbered_out_of_order_is_refused(self) -> None:
        self.assertRefused(document(history=["JOIN 41 bob", "MSG 40 alice hi", "LEFT 42 carol timeout"]), "numbered 40")

    def test_a_join_with_more_than_a_nick_is_refused(self) -> None:
        self.assertRefused(document(history=["MSG 40 a b", "JOIN 41 bob extra", "LEFT 42 c x"]), "numbered 41")

    def test_session_with_an_invalid_nick_is_refused(self) -> None:
        self.assertRefused(document(sessions=[{"nick": "no spaces", "token": "t", "expires": 1.0}]), "nick")

    def test_session_without_a_token_is_refused(self) -> None:
        self.assertRefused(document(sessions=[{"nick": "alice", "expires": 1.0}]), "token")

    def test_session_with_an_infinite_expiry_is_refused(self) -> None:
        self.assertRefused(document(sessions=[{"nick": "alice", "token": "t", "expires": 1e400}]), "expiry")

    def test_sessions_that_are_not_a_list_are_refused(self) -> None:
        self.assertRefused(document(sessions={"alice": 1}), "sessions is not a list")
