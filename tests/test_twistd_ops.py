"""
The installed ``twistd hbchat`` as a real process, as an operator runs it: ``--metrics``
over HTTP, and JSON lines from ``twistd --logger hbchat.logs.json_observer``.
"""

from __future__ import annotations

import json
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import deferLater
from twisted.web.client import Agent, readBody

from tests.test_integration import BYE_SHUTDOWN, DEADLINE, LineClient, within
from tests.test_twistd import TwistdProcess, TwistdTestCase, freePort


class TwistdOperationsTests(TwistdTestCase):
    @inlineCallbacks
    def retrying(self, process: TwistdProcess, what: str, attempt: Any) -> Any:
        """``attempt()``'s result, tried again while the server does not listen yet."""
        deadline = reactor.seconds() + DEADLINE
        while True:
            try:
                result = yield attempt()
            except ConnectionRefusedError:
                if process.reason is not None:
                    self.fail(f"twistd exited before it listened\n{process.output()}")
                if reactor.seconds() > deadline:
                    self.fail(f"twistd did not listen for {what} within {DEADLINE}s\n{process.output()}")
                yield deferLater(reactor, 0.1, lambda: None)
                continue
            return result

    @inlineCallbacks
    def connect(self, process: TwistdProcess, port: int) -> Any:
        client = LineClient("tester")
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=DEADLINE)
        yield self.retrying(
            process, "chat clients", lambda: within(connectProtocol(endpoint, client), DEADLINE, "connecting")
        )
        self.addCleanup(client.disconnect)
        return client

    @inlineCallbacks
    def get(self, process: TwistdProcess, port: int, path: str) -> Any:
        """(status, body) of ``GET path``, retrying until the server listens."""
        agent = Agent(reactor)
        url = f"http://127.0.0.1:{port}{path}".encode()
        response = yield self.retrying(
            process, "--metrics", lambda: within(agent.request(b"GET", url), DEADLINE, f"GET {path}")
        )
        body = yield within(readBody(response), DEADLINE, f"reading GET {path}")
        return response.code, body.decode("utf-8")

    @inlineCallbacks
    def test_metrics_endpoint_serves_health_and_prometheus_metrics(self) -> Any:
        chat, http = freePort(), freePort()
        process, transport = self.spawn(
            "--listen", f"tcp:{chat}:interface=127.0.0.1", "--metrics", f"tcp:{http}:interface=127.0.0.1"
        )
        status, body = yield self.get(process, http, "/healthz")
        self.assertEqual(status, 200, body)

        client = yield self.connect(process, chat)
        client.sendLine("NICK tester")
        yield client.waitForLine(r"JOIN \d+ tester")
        status, body = yield self.get(process, http, "/readyz")
        self.assertEqual((status, body), (200, "ready\n"))
        status, body = yield self.get(process, http, "/metrics")
        self.assertEqual(status, 200)
        values = {
            sample.name: sample.value for family in text_string_to_metric_families(body) for sample in family.samples
        }
        self.assertEqual(values["hbchat_users_registered"], 1)
        self.assertEqual(values["hbchat_connections_accepted_total"], 1)
        self.assertIn("hbchat_reactor_lag_seconds_count", values)
        self.assertIn("process_cpu_seconds_total", values)

        transport.signalProcess("TERM")
        yield client.waitForLine(BYE_SHUTDOWN)
        yield within(process.whenEnded(), DEADLINE, f"twistd exiting after SIGTERM\n{process.output()}")
        text = process.out.decode(errors="replace") + process.err.decode(errors="replace")
        self.assertNotIn("Traceback", text, process.output())
        # No access log: scrapes do not flood the log.
        self.assertNotIn("GET /metrics", text, process.output())

    @inlineCallbacks
    def test_json_logger_writes_one_object_per_line(self) -> Any:
        chat = freePort()
        process, transport = self.spawn(
            "--listen", f"tcp:{chat}:interface=127.0.0.1", before=("--logger", "hbchat.logs.json_observer")
        )
        client = yield self.connect(process, chat)
        client.sendLine("NICK tester")
        yield client.waitForLine(r"JOIN \d+ tester")
        client.sendLine("QUIT bye")
        yield client.waitForLine("BYE quit")
        yield within(client.whenLost(), DEADLINE, "the server closing the connection")
        transport.signalProcess("TERM")
        yield within(process.whenEnded(), DEADLINE, f"twistd exiting after SIGTERM\n{process.output()}")

        lines = process.out.decode().splitlines()
        self.assertTrue(lines, process.output())
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except ValueError:
                self.fail(f"not a JSON line: {line!r}\n{process.output()}")
        for record in records:
            self.assertIsInstance(record, dict)
            self.assertTrue({"time", "level", "namespace", "text"} <= record.keys(), record)
        registered = [record for record in records if record["text"].startswith("tester registered from")]
        self.assertEqual(len(registered), 1, process.output())
        self.assertEqual(registered[0]["nick"], "tester")
        self.assertEqual(registered[0]["level"], "info")
        self.assertEqual(registered[0]["namespace"], "hbchat.server.ChatFactory")
        closed = [record for record in records if record.get("reason") == "quit"]
        self.assertEqual(len(closed), 1, process.output())
        self.assertTrue(any(record["text"] == "Server Shut Down." for record in records), process.output())
