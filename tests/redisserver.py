"""
A real ``redis-server`` for the cluster tests: started by the test on a UNIX socket in a
temporary directory, without persistence unless the test asks for it, and stopped by its PID
at cleanup.

Without ``redis-server`` the tests are skipped, except under ``CI=true``, where they fail
(``.ci/run`` installs Debian's ``redis-server`` when it is missing).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial import unittest

from tests.test_integration import DEADLINE, within

REDIS_SERVER = shutil.which("redis-server") or (
    "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
)


def require_redis() -> str:
    """The path of ``redis-server``; a skip without it, a failure without it under CI=true."""
    if REDIS_SERVER is not None:
        return REDIS_SERVER
    if os.environ.get("CI") == "true":
        raise unittest.FailTest("redis-server is missing under CI=true (.ci/run installs it)")
    raise unittest.SkipTest("no redis-server on PATH (apt-get install redis-server)")


#: What redis-server logs once it accepts connections (7.0: "...now ready to accept connections at PATH").
_READY = re.compile(rb"[Rr]eady to accept connections")


class _RedisProcess(ProcessProtocol):
    def __init__(self) -> None:
        self.output = bytearray()
        self.reason: Failure | None = None
        self._ready: list[Deferred[None]] = []
        self._ended: list[Deferred[None]] = []

    def outReceived(self, data: bytes) -> None:
        self.output += data
        if _READY.search(bytes(self.output)) is not None:
            ready, self._ready = self._ready, []
            for d in ready:
                d.callback(None)

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        self.reason = reason
        for d in self._ready:
            d.errback(unittest.FailTest(f"redis-server exited before it was ready:\n{self.output.decode()}"))
        self._ready = []
        ended, self._ended = self._ended, []
        for d in ended:
            d.callback(None)

    def whenReady(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if _READY.search(bytes(self.output)) is not None:
            d.callback(None)
        else:
            self._ready.append(d)
        return d

    def whenEnded(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if self.reason is not None:
            d.callback(None)
        else:
            self._ended.append(d)
        return d


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """
    One ``redis-server`` of a test: ``start()`` it (again after ``stop()``: same directory,
    socket and, with ``persist``, the same append-only file).
    """

    def __init__(
        self,
        case: unittest.TestCase,
        persist: bool = False,
        tcp_port: int = 0,
        tls: tuple[str, str] | None = None,
        password: str | None = None,
    ) -> None:
        self.executable = require_redis()
        # A UNIX socket's path has at most 107 bytes: trial's test directories are too deep.
        self.directory = tempfile.mkdtemp(prefix="hbchat-redis-")
        case.addCleanup(shutil.rmtree, self.directory, True)
        self.socket = os.path.join(self.directory, "redis.sock")
        self.persist = persist
        #: Also listen on this loopback TCP port (0: the UNIX socket only).
        self.tcpPort = tcp_port
        #: Also serve TLS on a loopback port: (certificate file, key file).
        self.tls = tls
        self.tlsPort = 0
        #: AUTH required with this password (requirepass).
        self.password = password
        self.process: _RedisProcess | None = None
        self._transport: Any = None
        case.addCleanup(self.stop)

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pid(self) -> int | None:
        return None if self._transport is None else self._transport.pid

    @inlineCallbacks
    def start(self) -> Any:
        """Start it and wait until it accepts connections."""
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.persist else ["--appendonly", "no"]
        argv = [
            self.executable,
            "--port",
            str(self.tcpPort),
            "--bind",
            "127.0.0.1",
            "--unixsocket",
            self.socket,
            "--unixsocketperm",
            "700",
            "--dir",
            self.directory,
            "--save",
            "",
            *persistence,
            "--loglevel",
            "notice",
        ]
        if self.password is not None:
            argv += ["--requirepass", self.password]
        if self.tls is not None:
            if not self.tlsPort:
                self.tlsPort = _free_port()
            argv += [
                "--tls-port",
                str(self.tlsPort),
                "--tls-cert-file",
                self.tls[0],
                "--tls-key-file",
                self.tls[1],
                "--tls-auth-clients",
                "no",
            ]
        self.process = _RedisProcess()
        self._transport = reactor.spawnProcess(self.process, self.executable, argv, env={}, path=self.directory)
        yield within(self.process.whenReady(), DEADLINE, "redis-server starting")

    def signal(self, number: int) -> None:
        """Send it a signal (SIGSTOP, SIGCONT) by its PID."""
        if self._transport is not None and self.process is not None and self.process.reason is None:
            self._transport.signalProcess(number)

    @inlineCallbacks
    def stop(self, signal: str = "TERM") -> Any:
        """Stop it (by its PID) and wait until it has exited; nothing if it is not running."""
        process, transport = self.process, self._transport
        if process is None or process.reason is not None:
            return
        transport.signalProcess(signal)
        yield within(process.whenEnded(), DEADLINE, f"redis-server ending on SIG{signal}")
