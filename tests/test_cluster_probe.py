"""
The check at start (hbchat.cluster.probe): Redis's version and the key layout.

A real redis-server 7 answers the good cases.  No Redis 6 can run here, so the one test of
an old version talks to a stand-in that answers INFO as Redis 6.2 does (the only command
the probe sends before it refuses).
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest
from txredisapi import UnixConnection

from hbchat.cluster.keys import Keys
from hbchat.cluster.probe import ProbeError, probe
from hbchat.cluster.url import parse_redis_url
from tests.redisserver import RedisServer
from tests.test_integration import DEADLINE, within


class ProbeTests(unittest.TestCase):
    @inlineCallbacks
    def test_redis_7_accepted(self) -> Any:
        redis = RedisServer(self)
        yield redis.start()
        version = probe(parse_redis_url(redis.url, {}), Keys("hbchat"), 5.0)
        self.assertTrue(int(version.split(".")[0]) >= 7, version)

    @inlineCallbacks
    def test_other_layout_refused(self) -> Any:
        redis = RedisServer(self)
        yield redis.start()
        connection = yield within(UnixConnection(redis.socket, reconnect=False), DEADLINE, "connecting")
        self.addCleanup(connection.disconnect)
        yield connection.execute_command("SET", "{chat}:meta", "not a hash")
        error = self.assertRaises(ProbeError, probe, parse_redis_url(redis.url, {}), Keys("chat"), 5.0)
        self.assertIn("another layout", str(error))

    def test_unreachable_after_the_wait(self) -> None:
        url = parse_redis_url(f"unix://{os.path.abspath(self.mktemp())}.sock", {})
        error = self.assertRaises(ProbeError, probe, url, Keys("hbchat"), 0.3)
        self.assertIn("unreachable after 0.3s", str(error))

    def test_redis_6_refused(self) -> None:
        """A server that says it is Redis 6.2 is refused, naming the version needed."""
        directory = tempfile.mkdtemp(prefix="hbchat-probe-")
        self.addCleanup(os.rmdir, directory)
        path = os.path.join(directory, "old.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        self.addCleanup(os.unlink, path)
        listener.listen(1)
        self.addCleanup(listener.close)
        info = b"# Server\r\nredis_version:6.2.14\r\nredis_mode:standalone\r\n"

        def answer() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.recv(4096)
                connection.sendall(b"$%d\r\n%s\r\n" % (len(info), info))

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        self.addCleanup(thread.join, DEADLINE)
        error = self.assertRaises(ProbeError, probe, parse_redis_url(f"unix://{path}", {}), Keys("hbchat"), 5.0)
        self.assertIn("version 6.2.14; --redis needs 7 or later", str(error))
