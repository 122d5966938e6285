"""The cluster's pure pieces, without a reactor: --redis URLs, the key layout, log records, backoff."""

from __future__ import annotations

import random

from twisted.trial import unittest

from hbchat.cluster.backoff import CAP, full_jitter
from hbchat.cluster.keys import (
    BadRecordError,
    Control,
    Event,
    Keys,
    check_cluster_name,
    check_node_name,
    decode,
    events_in,
    parse_id,
    replay,
)
from hbchat.cluster.url import RedisURL, parse_redis_url
from hbchat.config import ConfigError


class RedisURLTests(unittest.TestCase):
    def parse(self, text: str, **environ: str) -> RedisURL:
        return parse_redis_url(text, environ)

    def test_host_only(self) -> None:
        """redis://host: port 6379, database 0, no login."""
        self.assertEqual(self.parse("redis://cache.example"), RedisURL("redis", host="cache.example"))

    def test_everything(self) -> None:
        """redis://user:password@host:port/db, user and password percent-decoded."""
        url = self.parse("redis://ann:p%40ss@10.0.0.5:6380/3")
        self.assertEqual(
            (url.scheme, url.username, url.password, url.host, url.port, url.db),
            ("redis", "ann", "p@ss", "10.0.0.5", 6380, 3),
        )

    def test_password_without_user(self) -> None:
        """redis://:password@host is the classic AUTH with a password only."""
        url = self.parse("redis://:secret@localhost")
        self.assertEqual((url.username, url.password), (None, "secret"))

    def test_ipv6_host(self) -> None:
        url = self.parse("redis://[::1]:7000")
        self.assertEqual((url.host, url.port), ("::1", 7000))

    def test_password_from_the_environment(self) -> None:
        """HBCHAT_REDIS_PASSWORD supplies the password a URL does not carry."""
        self.assertEqual(self.parse("redis://localhost", HBCHAT_REDIS_PASSWORD="envpass").password, "envpass")

    def test_url_password_wins(self) -> None:
        self.assertEqual(self.parse("redis://:inurl@localhost", HBCHAT_REDIS_PASSWORD="env").password, "inurl")

    def test_rediss_with_ca(self) -> None:
        """rediss:// is TLS; ?ca= names an existing CA file."""
        ca = self.mktemp()
        with open(ca, "w") as f:
            f.write("x")
        url = self.parse(f"rediss://redis.example:6390?ca={ca}")
        self.assertEqual((url.tls, url.ca, url.port), (True, ca, 6390))

    def test_rediss_system_store(self) -> None:
        url = self.parse("rediss://redis.example")
        self.assertEqual((url.tls, url.ca), (True, None))

    def test_missing_ca_file(self) -> None:
        error = self.assertRaises(ConfigError, self.parse, "rediss://h?ca=/nonexistent/ca.pem")
        self.assertIn("does not exist", str(error))

    def test_unix_socket_with_db(self) -> None:
        url = self.parse("unix:///run/redis/redis.sock?db=2")
        self.assertEqual((url.scheme, url.path, url.db), ("unix", "/run/redis/redis.sock", 2))

    def test_unix_socket_password(self) -> None:
        url = self.parse("unix://:pw@/run/redis.sock")
        self.assertEqual((url.path, url.password), ("/run/redis.sock", "pw"))

    def test_unix_needs_a_path(self) -> None:
        self.assertRaises(ConfigError, self.parse, "unix://")

    def test_unix_with_a_host(self) -> None:
        self.assertRaises(ConfigError, self.parse, "unix://host/run/redis.sock")

    def test_other_scheme(self) -> None:
        error = self.assertRaises(ConfigError, self.parse, "http://localhost")
        self.assertIn("--redis", str(error))

    def test_bad_port(self) -> None:
        self.assertRaises(ConfigError, self.parse, "redis://localhost:99999")

    def test_bad_db(self) -> None:
        self.assertRaises(ConfigError, self.parse, "redis://localhost/x")

    def test_unknown_option(self) -> None:
        error = self.assertRaises(ConfigError, self.parse, "redis://localhost?timeout=3")
        self.assertIn("unknown option", str(error))

    def test_no_host(self) -> None:
        self.assertRaises(ConfigError, self.parse, "redis://")

    def test_error_hides_the_password(self) -> None:
        """An error message never shows the password given in the URL."""
        error = self.assertRaises(ConfigError, self.parse, "redis://ann:topsecret@localhost/x")
        self.assertNotIn("topsecret", str(error))

    def test_describe_hides_the_password(self) -> None:
        self.assertEqual(self.parse("redis://:pw@h:1/2").describe(), "redis://h:1 db 2")
        self.assertNotIn("pw", repr(self.parse("redis://:pw@h")))


class NameTests(unittest.TestCase):
    def test_cluster_name(self) -> None:
        self.assertEqual(check_cluster_name("chat-eu.1"), "chat-eu.1")

    def test_cluster_name_with_braces_refused(self) -> None:
        """Braces would break the hash tag that keeps every key in one slot."""
        self.assertRaises(ConfigError, check_cluster_name, "a}b")

    def test_empty_names_refused(self) -> None:
        self.assertRaises(ConfigError, check_cluster_name, "")
        self.assertRaises(ConfigError, check_node_name, "")

    def test_node_name_with_space_refused(self) -> None:
        self.assertRaises(ConfigError, check_node_name, "a b")


class KeysTests(unittest.TestCase):
    def test_every_key_under_the_hash_tag(self) -> None:
        keys = Keys("chat")
        names = [keys.meta, keys.log, keys.nodes, keys.present, keys.node(b"n1/ab"), keys.session(b"tok")]
        self.assertTrue(all(name.startswith(b"{chat}:") for name in names), names)

    def test_nick_key_ignores_case(self) -> None:
        """Nicks are unique regardless of case: ALICE and alice share one key."""
        keys = Keys("chat")
        self.assertEqual(keys.nick(b"ALICE"), keys.nick(b"alice"))

    def test_clusters_apart(self) -> None:
        self.assertNotEqual(Keys("a").log, Keys("b").log)


class RecordTests(unittest.TestCase):
    def test_parse_id(self) -> None:
        self.assertEqual(parse_id(b"17-3"), (17, 3))

    def test_bad_id(self) -> None:
        self.assertRaises(BadRecordError, parse_id, b"17")

    def test_msg(self) -> None:
        self.assertEqual(
            decode(b"5-0", [b"k", b"M", b"n", b"ann", b"t", b"hi there"]),
            Event(5, b"MSG 5 ann hi there\n", b"M", b"ann"),
        )

    def test_join(self) -> None:
        self.assertEqual(decode(b"1-0", [b"k", b"J", b"n", b"ann"]), Event(1, b"JOIN 1 ann\n", b"J", b"ann"))

    def test_left(self) -> None:
        self.assertEqual(
            decode(b"9-0", [b"k", b"L", b"n", b"ann", b"t", b"timeout"]),
            Event(9, b"LEFT 9 ann timeout\n", b"L", b"ann"),
        )

    def test_control(self) -> None:
        record = decode(b"9-2", [b"k", b"P", b"a", b"node/1", b"n", b"bob", b"t", b"psst"])
        self.assertEqual(record, Control(b"P", b"node/1", b"bob", b"psst"))

    def test_unknown_kind(self) -> None:
        self.assertRaises(BadRecordError, decode, b"3-0", [b"k", b"X"])

    def test_odd_fields(self) -> None:
        self.assertRaises(BadRecordError, decode, b"3-0", [b"k"])

    def test_events_in_skips_control(self) -> None:
        entries = [
            (b"1-0", [b"k", b"J", b"n", b"a"]),
            (b"1-1", [b"k", b"R", b"a", b"x"]),
            (b"2-0", [b"k", b"J", b"n", b"b"]),
        ]
        self.assertEqual([event.seq for event in events_in(entries)], [1, 2])


class ReplayTests(unittest.TestCase):
    def events(self, *seqs: int) -> list[Event]:
        return [Event(seq, b"%d\n" % seq) for seq in seqs]

    def test_complete(self) -> None:
        self.assertEqual(replay(self.events(3, 4, 5), 3, 5), ([b"4\n", b"5\n"], True))

    def test_nothing_missed(self) -> None:
        self.assertEqual(replay(self.events(3, 4, 5), 5, 5), ([], True))

    def test_trimmed_is_partial(self) -> None:
        """Events after last_seq already trimmed: partial, never a false complete."""
        self.assertEqual(replay(self.events(4, 5), 1, 5), ([b"4\n", b"5\n"], False))

    def test_hole_is_partial(self) -> None:
        """A hole in the middle (Redis lost data and came back older) is partial too."""
        self.assertEqual(replay(self.events(2, 3, 5), 1, 5)[1], False)

    def test_bounded_by_upto(self) -> None:
        self.assertEqual(replay(self.events(2, 3, 4), 1, 3), ([b"2\n", b"3\n"], True))


class BackoffTests(unittest.TestCase):
    def test_first_window(self) -> None:
        rng = random.Random(1)
        self.assertTrue(all(0 <= full_jitter(0, rng) <= 0.1 for _ in range(200)))

    def test_capped(self) -> None:
        rng = random.Random(2)
        delays = [full_jitter(attempt, rng) for attempt in range(10, 1000)]
        self.assertTrue(all(0 <= d <= CAP for d in delays))

    def test_full_jitter_spreads_over_the_window(self) -> None:
        """Draws cover the window from near zero to near the cap, not a band near its end."""
        rng = random.Random(3)
        delays = [full_jitter(20, rng) for _ in range(500)]
        self.assertLess(min(delays), 0.1 * CAP)
        self.assertGreater(max(delays), 0.9 * CAP)
