"""
Socket activation: ``--listen systemd:...`` serves on a socket inherited from systemd.

A small launcher does what systemd does: it binds the socket as descriptor 3, sets
LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID (its own PID) and execs twistd, which keeps it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial import unittest

from tests.test_integration import DEADLINE, LineClient, within
from tests.test_twistd import TWISTD, TwistdProcess, freePort

LAUNCHER = """
import os, socket, sys
port, twistd = int(sys.argv[1]), sys.argv[2]
listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(128)
os.dup2(listener.fileno(), 3)
os.set_inheritable(3, True)
os.environ.update(LISTEN_FDS="1", LISTEN_FDNAMES="hbchat.socket", LISTEN_PID=str(os.getpid()))
os.execv(twistd, [twistd, "-n", "--pidfile=", "hbchat", "--listen", "systemd:domain=INET:index=0"])
"""


class SocketActivationTests(unittest.TestCase):
    @inlineCallbacks
    def test_serves_on_a_socket_inherited_from_systemd(self) -> Any:
        process, transport, _ = yield self.activated()
        transport.signalProcess("TERM")
        yield within(process.whenEnded(), DEADLINE, f"twistd stopping\n{process.output()}")
        self.assertNotIn("Traceback", process.output())

    @inlineCallbacks
    def test_systemctl_reload_without_ssl_listeners_is_logged_and_no_death(self) -> Any:
        """The unit's ExecReload (kill -HUP $MAINPID) on the unit's own command line."""
        process, transport, client = yield self.activated()
        transport.signalProcess("HUP")
        deadline = reactor.seconds() + DEADLINE
        while b"SIGHUP: nothing to reload" not in process.out:
            if process.reason is not None or reactor.seconds() > deadline:
                self.fail(f"no 'nothing to reload' after SIGHUP\n{process.output()}")
            yield task.deferLater(reactor, 0.05, lambda: None)
        client.sendLine("SAY reloaded")
        yield client.waitForLine(r"MSG \d+ activated reloaded")
        self.assertIsNone(process.reason, process.output())
        transport.signalProcess("TERM")
        yield within(process.whenEnded(), DEADLINE, f"twistd stopping\n{process.output()}")
        self.assertNotIn("Traceback", process.output())
        self.assertIn("Server Shut Down.", process.output())

    @inlineCallbacks
    def activated(self) -> Any:
        """(process, transport, a registered client) of twistd on a socket passed as systemd does."""
        if TWISTD is None:
            self.fail("twistd is not installed beside this Python")
        port = freePort()
        process = TwistdProcess()
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        transport = reactor.spawnProcess(
            process,
            sys.executable,
            [sys.executable, "-c", LAUNCHER, str(port), TWISTD],
            env=dict(os.environ),
            path=directory,
            childFDs={0: "w", 1: "r", 2: "r"},
        )

        def stop() -> Any:
            if process.reason is None:
                transport.signalProcess("KILL")
                return process.whenEnded()
            return None

        self.addCleanup(stop)
        # The socket is listening before twistd starts: the first connect is queued by the
        # kernel until hbchat accepts it, as with systemd.
        client = LineClient("activated")
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=DEADLINE)
        yield within(self._connectWhenBound(endpoint, client), DEADLINE, "connecting")
        self.addCleanup(client.disconnect)
        yield client.waitForLine(r"HELLO hbchat/1 .*")
        client.sendLine("NICK activated")
        yield client.waitForLine(r"WELCOME activated .*")
        client.sendLine("SAY through an inherited socket")
        yield client.waitForLine(r"MSG \d+ activated through an inherited socket")
        return process, transport, client

    @inlineCallbacks
    def _connectWhenBound(self, endpoint: Any, client: LineClient) -> Any:
        deadline = reactor.seconds() + DEADLINE
        while True:
            try:
                yield connectProtocol(endpoint, client)
                return client
            except Exception:
                if reactor.seconds() > deadline:
                    raise
                yield task.deferLater(reactor, 0.1, lambda: None)
