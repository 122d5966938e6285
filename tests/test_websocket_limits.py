"""
``--web``'s WebSockets under the limits, with autobahn's client over real loopback:
``--max-per-ip``, the budget of WebSocket pings, WebSocket pings that are not the heartbeat,
a fragmented message over ``--max-line``, and ``GET /ws`` while ``--max-handshakes`` is full.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import LoopingCall

from hbchat.server import connection as connection_module
from hbchat.server.addresses import peer_host
from tests.test_integration import DEADLINE, within
from tests.test_websocket import WebSocketTestCase
from tests.wsclient import UPGRADE, httpRequest


class PerAddressTests(WebSocketTestCase):
    @inlineCallbacks
    def test_max_per_ip_counts_websockets_and_refuses_with_err_503(self) -> Any:
        # Loopback is exempt from --max-per-ip, and the tests run only on loopback: here it counts.
        self.patch(connection_module, "limited_host", peer_host)
        _service, tcpPort, webPort = self.startWeb("--max-per-ip", "2")
        for name in ("first", "second"):
            client, _ = yield self.connectWeb(webPort, name)
            yield client.waitForLine(r"HELLO .*")
        third, socket = yield self.connectWeb(webPort, "third")
        yield third.waitForLine(r"ERR 503 too many connections from your address")
        yield within(third.whenLost(), DEADLINE, "the refused WebSocket closing")
        self.assertEqual(socket.closeCode, 1013)
        tcp = yield self.connect(tcpPort, "tcp")
        yield tcp.waitForLine(r"ERR 503 too many connections from your address")


class WebSocketPingTests(WebSocketTestCase):
    @inlineCallbacks
    def test_websocket_pings_past_the_budget_are_err_429_and_close_1008(self) -> Any:
        _service, _tcpPort, webPort = self.startWeb()
        client, socket = yield self.connectWeb(webPort, "pinger")
        yield self.register(client, "pinger")
        for index in range(40):
            socket.sendPing(b"%d" % index)
        yield client.waitForLine(r"ERR 429 WebSocket pings too often")
        yield within(client.whenLost(), DEADLINE, "the close after too many pings")
        self.assertEqual(socket.closeCode, 1008)

    @inlineCallbacks
    def test_a_client_sending_only_websocket_pings_is_cut_at_timeout(self) -> Any:
        _service, tcpPort, webPort = self.startWeb("--ping", "0.2", "--timeout", "1")
        mute, socket = yield self.connectWeb(webPort, "mute", answerPings=False)
        watcher = yield self.connect(tcpPort, "watcher")
        yield self.register(mute, "mute")
        yield self.register(watcher, "eyes")
        # Under the ping budget (ten a second with --ping 0.2), but no protocol line.
        pings = LoopingCall(socket.sendPing)
        pings.start(0.3)
        try:
            yield watcher.waitForLine(r"LEFT \d+ mute timeout")
            yield within(mute.whenLost(), DEADLINE, "the silent client's connection closing")
        finally:
            if pings.running:
                pings.stop()


class FragmentTests(WebSocketTestCase):
    @inlineCallbacks
    def test_a_fragmented_message_over_max_line_is_err_413_and_close_1009(self) -> Any:
        _service, _tcpPort, webPort = self.startWeb("--max-line", "100")
        client, socket = yield self.connectWeb(webPort, "pieces")
        yield self.register(client, "pieces")
        # Each fragment is under --max-line; together they pass it.
        socket.beginMessage(isBinary=False)
        socket.sendMessageFrame(b"SAY " + b"x" * 56)
        socket.sendMessageFrame(b"x" * 60)
        socket.sendMessageFrame(b"x" * 60)
        socket.endMessage()
        yield client.waitForLine(r"ERR 413 .*")
        yield within(client.whenLost(), DEADLINE, "the close after ERR 413")
        self.assertEqual(socket.closeCode, 1009)


class HandshakeRoomTests(WebSocketTestCase):
    @inlineCallbacks
    def test_get_ws_is_503_with_retry_after_while_max_handshakes_is_full(self) -> Any:
        _service, _tcpPort, webPort = self.startWeb("--max-handshakes", "1")
        deadline = reactor.seconds() + DEADLINE
        while True:
            # The room is full for the first one's grace (at most 0.25 s), then it makes way:
            # on a busy machine the request may come too late; then again, with a new one.
            first, socket = yield self.connectWeb(webPort, "first")
            yield first.waitForLine(r"HELLO .*")
            answer = yield httpRequest(webPort, "GET", "/ws", UPGRADE)
            if answer.status == 503:
                break
            self.assertEqual(answer.status, 101)
            self.assertLess(reactor.seconds(), deadline, "never answered 503")
            socket.transport.abortConnection()
        self.assertEqual(answer.headers["retry-after"], "1")
        self.assertIn(b"too many connections registering", answer.body)
