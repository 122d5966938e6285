"""The pure parts of ``--web``: the Origin policy, lines as frames, close codes."""

from __future__ import annotations

import struct

from twisted.trial.unittest import SynchronousTestCase

from hbchat.web.frames import FrameCache, close_code, frame_error, line_frames, small_text_frame, text_frame
from hbchat.web.origins import OriginError, OriginPolicy, own_origin, parse_origin


class OriginTests(SynchronousTestCase):
    def test_origins_are_normalized(self) -> None:
        self.assertEqual(parse_origin("HTTPS://Chat.Example.ORG:443"), "https://chat.example.org")
        self.assertEqual(parse_origin("http://chat.example.org:8080/"), "http://chat.example.org:8080")
        self.assertEqual(parse_origin("http://[::1]:80"), "http://[::1]")

    def test_what_is_not_an_origin_is_refused(self) -> None:
        for text in ("chat.example.org", "ftp://x", "https://x/path", "https://u:p@x", "https://x?q", "https://:1"):
            self.assertRaises(OriginError, parse_origin, text)

    def test_own_origin_comes_from_the_scheme_and_host(self) -> None:
        self.assertEqual(own_origin(False, "127.0.0.1:8080"), "http://127.0.0.1:8080")
        self.assertEqual(own_origin(True, "chat.example.org:443"), "https://chat.example.org")
        self.assertIsNone(own_origin(False, None))

    def test_policy_allows_own_and_listed_and_absent_origins(self) -> None:
        policy = OriginPolicy(["https://friend.example"])
        self.assertIsNone(policy.refusal("http://127.0.0.1:8080", False, "127.0.0.1:8080"))
        self.assertIsNone(policy.refusal("https://friend.example", False, "127.0.0.1:8080"))
        self.assertIsNone(policy.refusal(None, False, "127.0.0.1:8080"))

    def test_policy_refuses_foreign_null_and_scheme_mismatch(self) -> None:
        policy = OriginPolicy()
        self.assertIsNotNone(policy.refusal("https://evil.example", False, "127.0.0.1:8080"))
        self.assertIsNotNone(policy.refusal("null", False, "127.0.0.1:8080"))
        self.assertIsNotNone(policy.refusal("https://127.0.0.1:8080", False, "127.0.0.1:8080"))
        self.assertIsNotNone(policy.refusal("not an origin", False, "127.0.0.1:8080"))


class FrameTests(SynchronousTestCase):
    def test_short_medium_and_long_text_frames(self) -> None:
        self.assertEqual(text_frame(b"hi"), b"\x81\x02hi")
        self.assertEqual(text_frame(b"x" * 200)[:4], b"\x81\x7e" + struct.pack("!H", 200))
        self.assertEqual(text_frame(b"x" * 70000)[:10], b"\x81\x7f" + struct.pack("!Q", 70000))

    def test_each_line_is_one_frame_without_its_ending(self) -> None:
        self.assertEqual(line_frames(b"PING 1\nMSG 2 a b\r\n"), b"\x81\x06PING 1\x81\x09MSG 2 a b")

    def test_cache_frames_the_same_bytes_once(self) -> None:
        cache = FrameCache()
        data = b"MSG 1 a hello\n"
        first = cache.frames(data)
        self.assertIs(cache.frames(data), first)
        self.assertEqual(cache.frames(b"MSG 2 a bye\n"), text_frame(b"MSG 2 a bye"))

    def test_frames_holding_line_endings_are_refused(self) -> None:
        self.assertIsNone(frame_error(b"SAY hello"))
        self.assertIsNotNone(frame_error(b"SAY a\nSAY b"))
        self.assertIsNotNone(frame_error(b"SAY a\r"))

    def test_close_codes_say_why(self) -> None:
        self.assertEqual(close_code("shutdown"), 1001)
        self.assertEqual(close_code("line_too_long"), 1009)
        self.assertEqual(close_code("full"), 1013)
        self.assertEqual(close_code("quit"), 1000)
        self.assertEqual(close_code(None), 1000)

    def test_small_masked_text_frames_are_unmasked(self) -> None:
        key = b"\x12\x34\x56\x78"
        payload = "PONG 1 é".encode()
        masked = bytes(byte ^ key[index % 4] for index, byte in enumerate(payload))
        self.assertEqual(small_text_frame(bytes([0x81, 0x80 | len(payload)]) + key + masked), payload)
        self.assertEqual(small_text_frame(b"\x81\x80" + key), b"")

    def test_other_frames_take_the_general_path(self) -> None:
        key = b"\0\0\0\0"
        for frame in (
            b"\x81\x06PONG 1",  # not masked
            b"\x82\x86" + key + b"PONG 1",  # binary
            b"\x01\x86" + key + b"PONG 1",  # not final
            b"\xc1\x86" + key + b"PONG 1",  # an extension bit
            b"\x81\x86" + key + b"PONG",  # incomplete
            b"\x81\x86" + key + b"PONG 1\x81",  # more than one frame
            b"\x81\xfe\x00\x7e" + key + b"x" * 126,  # 16-bit length
        ):
            self.assertIsNone(small_text_frame(frame), frame)
