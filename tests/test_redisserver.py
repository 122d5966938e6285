"""The test harness's real redis-server: it starts, answers, and stops by its PID."""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest
from txredisapi import UnixConnection

from tests.redisserver import RedisServer
from tests.test_integration import DEADLINE, within


class RedisServerTests(unittest.TestCase):
    @inlineCallbacks
    def test_answers_on_its_unix_socket(self) -> Any:
        """A started server answers PING on its socket in the test's directory."""
        server = RedisServer(self)
        yield server.start()
        connection = yield within(UnixConnection(server.socket, reconnect=False), DEADLINE, "connecting")
        self.addCleanup(connection.disconnect)
        answer = yield connection.ping()
        self.assertEqual(answer, "PONG")

    @inlineCallbacks
    def test_runs_without_persistence(self) -> Any:
        """No save points and no append-only file unless asked for."""
        server = RedisServer(self)
        yield server.start()
        connection = yield within(UnixConnection(server.socket, reconnect=False), DEADLINE, "connecting")
        self.addCleanup(connection.disconnect)
        save = yield connection.execute_command("CONFIG", "GET", "save")
        appendonly = yield connection.execute_command("CONFIG", "GET", "appendonly")
        self.assertEqual((save, appendonly), (["save", ""], ["appendonly", "no"]))

    @inlineCallbacks
    def test_stops_by_pid(self) -> Any:
        """stop() ends the process it started: its PID is gone."""
        server = RedisServer(self)
        yield server.start()
        pid = server.pid
        assert pid is not None
        yield server.stop()
        self.assertRaises(ProcessLookupError, os.kill, pid, 0)
