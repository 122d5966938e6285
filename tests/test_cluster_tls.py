"""rediss://: a node talks to Redis over TLS, the server's certificate verified with ?ca=FILE."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks

from hbchat.cluster.chat import ClusterChat
from hbchat.cluster.keys import Keys
from hbchat.cluster.probe import ProbeError, probe
from hbchat.cluster.url import parse_redis_url
from hbchat.config import ServerConfig
from hbchat.server.factory import NoEvents
from tests.clusternodes import ClusterTestCase, until
from tests.redisserver import RedisServer
from tests.tlscerts import CertificateAuthority


class RedissTests(ClusterTestCase):
    @inlineCallbacks
    def tlsRedis(self) -> Any:
        directory = Path(self.mktemp()).absolute()
        directory.mkdir()
        ca = CertificateAuthority()
        cert, key = ca.server("127.0.0.1").write(directory, "redis")
        redis = RedisServer(self, tls=(str(cert), str(key)))
        yield redis.start()
        return redis, ca.write(directory)

    @inlineCallbacks
    def test_chat_over_verified_tls(self) -> Any:
        redis, ca_file = yield self.tlsRedis()
        url = f"rediss://127.0.0.1:{redis.tlsPort}?ca={ca_file}"
        _, port_a = yield self.startNode(url, "a")
        _, port_b = yield self.startNode(url, "b")
        ann, _, _ = yield self.join(port_a, "ann")
        bob, _, _ = yield self.join(port_b, "bob")
        ann.sendLine("SAY over tls")
        yield bob.waitForLine(r"MSG \d+ ann over tls")

    @inlineCallbacks
    def test_probe_refuses_an_unknown_ca(self) -> Any:
        """A certificate the given CA did not sign: the start check refuses, naming the failure."""
        redis, _ = yield self.tlsRedis()
        other = Path(self.mktemp()).absolute()
        other.mkdir()
        wrong_ca = CertificateAuthority("another CA").write(other)
        url = parse_redis_url(f"rediss://127.0.0.1:{redis.tlsPort}?ca={wrong_ca}", {})
        error = self.assertRaises(ProbeError, probe, url, Keys("hbchat"), 0.3)
        self.assertIn("CERTIFICATE_VERIFY_FAILED", str(error))

    @inlineCallbacks
    def test_probe_over_verified_tls(self) -> Any:
        redis, ca_file = yield self.tlsRedis()
        url = parse_redis_url(f"rediss://127.0.0.1:{redis.tlsPort}?ca={ca_file}", {})
        self.assertTrue(probe(url, Keys("hbchat"), 5.0).startswith("7"))

    @inlineCallbacks
    def test_node_refuses_an_unknown_ca(self) -> Any:
        """The node's own links verify too: with the wrong CA it never joins, and keeps trying."""
        redis, _ = yield self.tlsRedis()
        other = Path(self.mktemp()).absolute()
        other.mkdir()
        wrong_ca = CertificateAuthority("another CA").write(other)
        url = parse_redis_url(f"rediss://127.0.0.1:{redis.tlsPort}?ca={wrong_ca}", {})
        chat = ClusterChat(ServerConfig(), reactor, NoEvents(), lambda: None, url, "hbchat", "a", 2.0)
        chat.start()
        self.addCleanup(chat.stop)
        yield until(lambda: chat.node.reconnects >= 2, "two failed attempts")
        self.assertFalse(chat.available)
