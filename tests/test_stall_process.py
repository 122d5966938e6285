"""
A real ``twistd hbchat`` stopped with SIGSTOP for twice its idle timeout, then continued.

While it is stopped it sends no PINGs, so clients that speak only to answer a PING say
nothing either.  On waking, the server must ask before it judges: every client that answers
within the usual window stays, and a dead one is cut right after that window.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.defer import inlineCallbacks

from tests.test_stall import SocketClients
from tests.test_twistd import TwistdProcess, TwistdTestCase, freePort


class StoppedServerTests(TwistdTestCase, SocketClients):
    @inlineCallbacks
    def test_clients_that_only_answer_pings_survive_a_sigstop_of_twice_the_timeout(self) -> Any:
        ping, timeout = 0.5, 1.5
        port = freePort()
        process = TwistdProcess()
        arguments = [self.twistd, "-n", "--pidfile=", "hbchat", "--listen", f"tcp:{port}:interface=127.0.0.1"]
        arguments += ["--ping", str(ping), "--timeout", str(timeout)]
        transport = reactor.spawnProcess(
            process, self.twistd, arguments, env=dict(os.environ), path=self.freshDirectory()
        )
        self.addCleanup(self._kill, process, transport)
        probe = yield self._connect(process, port)
        probe.disconnect()

        # Each answers a PING 50 ms after it arrives (the protocol allows 250 ms here).
        answering = [self.startClient(port, f"answer{n}", chatty=False, answerAfter=0.05) for n in range(20)]
        dead = self.startClient(port, "dead", chatty=False)
        everyone = [*answering, dead]
        yield self.waitFor(lambda: all(c.registered.is_set() for c in everyone), "all to register")
        yield task.deferLater(reactor, 0.5, lambda: None)

        def resume() -> None:
            if process.reason is None:
                transport.signalProcess(signal.SIGCONT)

        transport.signalProcess(signal.SIGSTOP)
        self.addCleanup(resume)
        yield task.deferLater(reactor, 2 * timeout, lambda: None)
        transport.signalProcess(signal.SIGCONT)
        woke = time.monotonic()

        yield self.waitFor(lambda: dead.closedAt is not None, "the dead client to be cut")
        yield task.deferLater(reactor, 3 * ping, lambda: None)
        for client in everyone:
            self.assertIsNone(client.error, f"{client.nick}: {client.error!r}")
        cut = [c.nick for c in answering if c.closedAt is not None]
        self.assertEqual(cut, [], f"cut after the stop although they answered\n{process.output()}")
        watcher = answering[0]
        self.assertTrue(any(line.endswith(" dead timeout") for line in watcher.lines), watcher.lines[-10:])
        assert dead.closedAt is not None
        self.assertLess(dead.closedAt - woke, ping + 2.0)
