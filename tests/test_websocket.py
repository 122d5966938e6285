"""
``--web``'s WebSocket with autobahn's WebSocket client over real loopback: the same chat as
TCP, the same heartbeat, the same limits, and what only a WebSocket can get wrong.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.interfaces import IReactorSocket
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.task import LoopingCall, deferLater
from twisted.python import usage
from twisted.trial import unittest

from hbchat.server.tap import ServerOptions
from hbchat.web.pages import SECURITY_HEADERS
from tests.test_integration import DEADLINE, ChatTestCase, Flood, LineClient, msgs, tcpPortOf, within
from tests.test_web import httpPortOf
from tests.tlscerts import CertificateAuthority
from tests.wsclient import UPGRADE, connectWS, httpRequest, webPortOf, wsFactory

LOOPBACK = "tcp:0:interface=127.0.0.1"


class WebSocketTestCase(ChatTestCase):
    def startWeb(self, *arguments: str) -> tuple[Any, int, int]:
        """A service with one --listen and one --web on loopback: (service, tcp port, web port)."""
        service = self.startService("--listen", LOOPBACK, "--web", LOOPBACK, *arguments)
        return service, tcpPortOf(service.factory), webPortOf(service)

    @inlineCallbacks
    def connectWeb(self, port: int, name: str, **kwargs: Any) -> Any:
        client, socket = yield connectWS(port, name, **kwargs)
        self.clients.append(client)
        return client, socket


class ChatAcrossTests(WebSocketTestCase):
    @inlineCallbacks
    def test_websocket_and_tcp_users_share_one_chat(self) -> Any:
        _service, tcpPort, webPort = self.startWeb()
        web, socket = yield self.connectWeb(webPort, "web")
        self.assertEqual(socket.subprotocol, "hbchat.v1")
        tcp = yield self.connect(tcpPort, "tcp")
        yield self.register(web, "webby")
        start = web.mark()
        yield self.register(tcp, "tcpy")
        yield web.waitForLine(r"JOIN \d+ tcpy", start)
        web.sendLine("SAY hello from the browser")
        tcp.sendLine("SAY hello from the terminal")
        for client in (web, tcp):
            yield client.waitForLines(r"MSG \d+ \S+ hello from the .*", 2)
        self.assertEqual(msgs(web), msgs(tcp))
        web.sendLine("TELL tcpy psst")
        yield tcp.waitForLine(r"PRIV webby psst")
        tcp.sendLine("WHO")
        users = yield tcp.waitForLine(r"USERS (.*)")
        self.assertEqual(sorted(users.group(1).split()), ["tcpy", "webby"])
        start = tcp.mark()
        web.sendLine("QUIT")
        yield tcp.waitForLine(r"LEFT \d+ webby quit", start)


class BrowserLikeTests(WebSocketTestCase):
    @inlineCallbacks
    def test_a_client_offering_compression_is_served_without_it(self) -> Any:
        _service, _tcpPort, webPort = self.startWeb()
        client, socket = yield self.connectWeb(webPort, "deflate", compression=True)
        yield self.register(client, "deflate")
        self.assertIsNone(socket.websocket_extensions_in_use or None)
        client.sendLine("SAY plain")
        yield client.waitForLine(r"MSG \d+ deflate plain")


class HeartbeatTests(WebSocketTestCase):
    @inlineCallbacks
    def test_silent_websocket_client_is_cut_at_timeout(self) -> Any:
        _service, tcpPort, webPort = self.startWeb("--ping", "0.2", "--timeout", "1")
        silent, _ = yield self.connectWeb(webPort, "silent", answerPings=False)
        watcher = yield self.connect(tcpPort, "watcher")
        yield self.register(silent, "mute")
        yield self.register(watcher, "eyes")
        yield silent.waitForLine(r"PING \S+")
        yield watcher.waitForLine(r"LEFT \d+ mute timeout")
        yield within(silent.whenLost(), DEADLINE, "the silent client's connection closing")

    @inlineCallbacks
    def test_websocket_client_answering_pings_stays(self) -> Any:
        _service, _tcpPort, webPort = self.startWeb("--ping", "0.2", "--timeout", "1")
        alive, _ = yield self.connectWeb(webPort, "alive")
        yield self.register(alive, "alive")
        yield alive.waitForLines(r"PING \S+", 8)
        self.assertIsNone(alive.lostReason)


class FrameTests(WebSocketTestCase):
    @inlineCallbacks
    def test_frame_over_max_line_is_err_413_and_close_1009(self) -> Any:
        _service, _tcpPort, webPort = self.startWeb("--max-line", "100")
        client, socket = yield self.connectWeb(webPort, "big")
        yield self.register(client, "big")
        client.sendLine("SAY " + "x" * 200)
        yield client.waitForLine(r"ERR 413 .*")
        yield within(client.whenLost(), DEADLINE, "the close after ERR 413")
        self.assertEqual(socket.closeCode, 1009)

    @inlineCallbacks
    def test_frame_of_exactly_max_line_is_a_line(self) -> Any:
        _service, _tcpPort, webPort = self.startWeb("--max-line", "100")
        client, _ = yield self.connectWeb(webPort, "edge")
        yield self.register(client, "edge")
        text = "y" * (100 - len("SAY "))
        client.sendLine("SAY " + text)
        yield client.waitForLine(rf"MSG \d+ edge {text}")

    @inlineCallbacks
    def test_binary_frame_is_close_1003(self) -> Any:
        _service, _tcpPort, webPort = self.startWeb()
        client, socket = yield self.connectWeb(webPort, "binary")
        yield self.register(client, "binary")
        socket.sendMessage(b"SAY hi", isBinary=True)
        yield client.waitForLine(r"ERR 400 binary .*")
        yield within(client.whenLost(), DEADLINE, "the close after a binary frame")
        self.assertEqual(socket.closeCode, 1003)

    @inlineCallbacks
    def test_frame_with_a_line_ending_inside_is_err_400(self) -> Any:
        _service, _tcpPort, webPort = self.startWeb()
        client, socket = yield self.connectWeb(webPort, "two")
        yield self.register(client, "two")
        start = client.mark()
        socket.sendMessage(b"SAY one\nSAY two", isBinary=False)
        yield client.waitForLine(r"ERR 400 one line per frame.*", start)
        client.sendLine("SAY three")
        yield client.waitForLine(r"MSG \d+ two three", start)
        self.assertEqual([text for _, _, text in msgs(client)], ["three"])

    @inlineCallbacks
    def test_a_fragmented_message_is_one_line(self) -> Any:
        _service, _tcpPort, webPort = self.startWeb()
        client, socket = yield self.connectWeb(webPort, "pieces")
        yield self.register(client, "pieces")
        socket.sendMessage(b"SAY in three pieces", isBinary=False, fragmentSize=7)
        yield client.waitForLine(r"MSG \d+ pieces in three pieces")

    @inlineCallbacks
    def test_a_message_in_too_many_frames_is_close_1008(self) -> Any:
        _service, _tcpPort, webPort = self.startWeb()
        client, socket = yield self.connectWeb(webPort, "crumbs")
        yield self.register(client, "crumbs")
        socket.sendMessage(b"SAY " + b"x" * 40, isBinary=False, fragmentSize=2)
        yield client.waitForLine(r"ERR 400 a line in at most 16 frames")
        yield within(client.whenLost(), DEADLINE, "the close after too many frames")
        self.assertEqual(socket.closeCode, 1008)

    @inlineCallbacks
    def test_shutdown_is_bye_then_close_1001(self) -> Any:
        service, _tcpPort, webPort = self.startWeb("--retry-hint", "3")
        client, socket = yield self.connectWeb(webPort, "bye")
        yield self.register(client, "bye")
        yield within(service.stopService(), DEADLINE, "stopping the service")
        yield client.waitForLine(r"BYE shutdown retry=\S+.*")
        yield within(client.whenLost(), DEADLINE, "the close after BYE")
        self.assertEqual(socket.closeCode, 1001)


class LimitTests(WebSocketTestCase):
    @inlineCallbacks
    def test_max_clients_counts_websockets_and_refuses_with_err_503(self) -> Any:
        _service, tcpPort, webPort = self.startWeb("--max-clients", "1")
        first, _ = yield self.connectWeb(webPort, "first")
        yield self.register(first, "first")
        second, socket = yield self.connectWeb(webPort, "second")
        yield second.waitForLine(r"ERR 503 server full")
        yield within(second.whenLost(), DEADLINE, "the refused connection closing")
        self.assertEqual(socket.closeCode, 1013)
        tcp = yield self.connect(tcpPort, "tcp")
        yield tcp.waitForLine(r"ERR 503 server full")

    @inlineCallbacks
    def test_rate_limit_holds_per_websocket(self) -> Any:
        _service, _tcpPort, webPort = self.startWeb("--rate", "1", "--burst", "3")
        client, _ = yield self.connectWeb(webPort, "fast")
        yield self.register(client, "fast")
        start = client.mark()
        for index in range(6):
            client.sendLine(f"SAY {index}")
        yield client.waitForLine(r"ERR 429 .*", start)

    @inlineCallbacks
    def test_registration_timeout_holds_for_websockets(self) -> Any:
        _service, _tcpPort, webPort = self.startWeb("--register-timeout", "0.5")
        client, socket = yield self.connectWeb(webPort, "late")
        yield client.waitForLine(r"ERR 408 .*")
        yield within(client.whenLost(), DEADLINE, "the close after ERR 408")
        self.assertEqual(socket.closeCode, 1008)

    @inlineCallbacks
    def test_websocket_connections_show_their_listener(self) -> Any:
        service, _tcpPort, webPort = self.startWeb()
        client, _ = yield self.connectWeb(webPort, "shown")
        yield self.register(client, "shown")
        listeners = {protocol.listener for protocol in service.factory.connections}
        self.assertEqual(listeners, {"web:" + LOOPBACK})
        web = [listener for listener in service.factory.listeners if listener.description.startswith("web:")]
        self.assertEqual([(listener.accepted, listener.listening) for listener in web], [(1, True)])


class ResumeTests(WebSocketTestCase):
    @inlineCallbacks
    def test_websocket_client_resumes_with_what_it_missed(self) -> Any:
        _service, tcpPort, webPort = self.startWeb()
        web, _ = yield self.connectWeb(webPort, "web")
        tcp = yield self.connect(tcpPort, "tcp")
        welcome = web.waitForLine(r"WELCOME webby (\S+) (\d+)")
        yield self.register(web, "webby")
        token = (yield welcome).group(1)
        yield self.register(tcp, "tcpy")
        last = max(seq for seq, _, _ in msgs(web)) if msgs(web) else 0
        last = max([last] + [int(m) for m in re.findall(r"^(?:JOIN|MSG|LEFT) (\d+)", "\n".join(web.lines), re.M)])
        yield web.disconnect()
        yield tcp.waitForLine(r"LEFT \d+ webby error")
        tcp.sendLines(["SAY one", "SAY two"])
        yield tcp.waitForLines(r"MSG \d+ tcpy (one|two)", 2)
        again, _ = yield self.connectWeb(webPort, "again")
        yield again.waitForLine(r"HELLO .*")
        again.sendLine(f"RESUME {token} {last}")
        yield again.waitForLine(r"RESUMED \d+ .*")
        self.assertEqual([text for _, _, text in msgs(again)], ["one", "two"])


class AuthTests(WebSocketTestCase):
    @inlineCallbacks
    def test_websocket_nick_needs_the_password(self) -> Any:
        path = self.mktemp()
        with open(path, "w") as handle:
            handle.write("alice:wonderland\n")
        _service, _tcpPort, webPort = self.startWeb("--auth", f"file:{path}")
        client, _ = yield self.connectWeb(webPort, "alice")
        yield client.waitForLine(r"HELLO .* auth=required.*")
        client.sendLine("NICK alice wrong")
        yield client.waitForLine(r"ERR 401 .*")
        client.sendLine("NICK alice wonderland")
        yield client.waitForLine(r"WELCOME alice \S+ \d+")


class OriginTests(WebSocketTestCase):
    @inlineCallbacks
    def test_foreign_origin_is_403_before_the_upgrade(self) -> Any:
        service, _tcpPort, webPort = self.startWeb()
        answer = yield httpRequest(webPort, "GET", "/ws", {**UPGRADE, "Origin": "https://evil.example"})
        self.assertEqual(answer.status, 403)
        self.assertNotIn("sec-websocket-accept", answer.headers)
        self.assertEqual(len(service.factory.connections), 0)

    @inlineCallbacks
    def test_foreign_origin_cannot_open_the_websocket(self) -> Any:
        _service, _tcpPort, webPort = self.startWeb()
        failure = yield self.assertFailure(connectWS(webPort, "evil", origin="https://evil.example"), ConnectionError)
        self.assertIn("403", str(failure))

    @inlineCallbacks
    def test_the_pages_own_origin_opens_it(self) -> Any:
        _service, _tcpPort, webPort = self.startWeb()
        client, _ = yield self.connectWeb(webPort, "own", origin=f"http://127.0.0.1:{webPort}")
        yield client.waitForLine(r"HELLO .*")

    @inlineCallbacks
    def test_web_origin_allows_another_origin(self) -> Any:
        _service, _tcpPort, webPort = self.startWeb("--web-origin", "https://chat.example.org")
        client, _ = yield self.connectWeb(webPort, "other", origin="https://CHAT.example.org:443")
        yield client.waitForLine(r"HELLO .*")

    @inlineCallbacks
    def test_request_without_origin_is_a_program_and_let_through(self) -> Any:
        _service, _tcpPort, webPort = self.startWeb()
        client, _ = yield self.connectWeb(webPort, "program")
        yield client.waitForLine(r"HELLO .*")


class HTTPTests(WebSocketTestCase):
    @inlineCallbacks
    def test_page_is_served_with_security_headers(self) -> Any:
        _service, _tcpPort, webPort = self.startWeb()
        answer = yield httpRequest(webPort, "GET", "/")
        self.assertEqual(answer.status, 200)
        self.assertTrue(answer.headers["content-type"].startswith("text/html"))
        policy = answer.headers["content-security-policy"]
        self.assertIn("script-src 'self'", policy)
        self.assertNotIn("unsafe-inline", policy)
        self.assertEqual(answer.headers["x-content-type-options"], "nosniff")
        self.assertIn(b"<script", answer.body)
        self.assertNotRegex(answer.body.decode(), r"<script(?![^>]*\ssrc=)[^>]*>")

    @inlineCallbacks
    def test_shipped_script_is_served_as_javascript(self) -> Any:
        _service, _tcpPort, webPort = self.startWeb()
        answer = yield httpRequest(webPort, "GET", "/app.js")
        self.assertEqual(answer.status, 200)
        self.assertTrue(answer.headers["content-type"].startswith("text/javascript"))
        self.assertEqual(answer.headers["x-content-type-options"], "nosniff")

    @inlineCallbacks
    def test_unknown_paths_are_404(self) -> Any:
        _service, _tcpPort, webPort = self.startWeb()
        for path in ("/nope", "/static/", "/../pyproject.toml", "/index.html/x", "/ws/x"):
            answer = yield httpRequest(webPort, "GET", path)
            self.assertEqual((path, answer.status), (path, 404))
            self.assertEqual(answer.headers["x-content-type-options"], "nosniff")

    @inlineCallbacks
    def test_a_large_request_body_closes_the_connection(self) -> Any:
        _service, _tcpPort, webPort = self.startWeb()
        failure = yield self.assertFailure(
            httpRequest(webPort, "POST", "/", {"Content-Length": str(10**9)}), ConnectionError
        )
        self.assertIn("closed before a whole answer", str(failure))

    @inlineCallbacks
    def test_every_answer_carries_the_security_headers(self) -> Any:
        _service, _tcpPort, webPort = self.startWeb()
        answers = {
            405: ("POST", "/", {"Content-Length": "0"}),
            404: ("GET", "/nope", {}),
            426: ("GET", "/ws", {}),
            403: ("GET", "/ws", {**UPGRADE, "Origin": "http://evil.example"}),
        }
        for status, (method, path, headers) in answers.items():
            answer = yield httpRequest(webPort, method, path, headers)
            self.assertEqual(answer.status, status)
            for name, value in SECURITY_HEADERS.items():
                self.assertEqual(
                    (status, answer.headers.get(name.decode().lower())), (status, value.decode()), answer.headers
                )

    @inlineCallbacks
    def test_head_of_ws_is_426(self) -> Any:
        _service, _tcpPort, webPort = self.startWeb()
        answer = yield httpRequest(webPort, "HEAD", "/ws", UPGRADE)
        self.assertEqual(answer.status, 426)

    @inlineCallbacks
    def test_plain_get_of_ws_is_426(self) -> Any:
        _service, _tcpPort, webPort = self.startWeb()
        answer = yield httpRequest(webPort, "GET", "/ws")
        self.assertEqual(answer.status, 426)
        self.assertEqual(answer.headers["upgrade"].lower(), "websocket")


class OptionTests(unittest.SynchronousTestCase):
    def test_web_and_web_origin_are_repeatable(self) -> None:
        options = ServerOptions()
        options.parseOptions(
            [
                "--web",
                "tcp:8080",
                "--web",
                "tcp:8081",
                "--web-origin",
                "https://a.example",
                "--web-origin",
                "http://b:81",
            ]
        )
        self.assertEqual(options["web"], ["tcp:8080", "tcp:8081"])
        self.assertEqual(options["web-origin"], ["https://a.example", "http://b:81"])

    def test_bad_values_are_usage_errors(self) -> None:
        for arguments in (
            ["--web", "nonsense:1"],
            ["--web", "tcp:8080", "--web-origin", "chat.example.org"],
            ["--web", "tcp:8080", "--web-origin", "https://chat.example.org/path"],
            ["--web-origin", "https://chat.example.org"],
            ["--web", "ssl:8443:privateKey=/nonexistent.pem"],
        ):
            with self.assertRaises(usage.UsageError, msg=arguments):
                ServerOptions().parseOptions(arguments)

    def test_help_tells_both_options(self) -> None:
        text = str(ServerOptions())
        self.assertIn("--web=", text)
        self.assertIn("--web-origin=", text)
        self.assertIn("hbchat.v1", text)


class SecureTests(WebSocketTestCase):
    @inlineCallbacks
    def test_wss_uses_the_tls_of_listen_ssl_and_sighup_reloads_it(self) -> Any:
        directory = Path(self.mktemp())
        directory.mkdir()
        ca = CertificateAuthority()
        cert, key = ca.server("localhost").write(directory, "server")
        service = self.startService(
            "--listen", LOOPBACK, "--web", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
        )
        port = webPortOf(service)
        options = optionsForClientTLS("localhost", trustRoot=Certificate.loadPEM(ca.cert_pem))
        old, _ = yield self.connectWeb(port, "old", tls=options)
        yield self.register(old, "old")
        second = ca.server("localhost")
        second.write(directory, "server")
        self.assertIn("reloaded", service.reloadTLS())
        new, newSocket = yield self.connectWeb(port, "new", tls=options)
        yield self.register(new, "new")
        served = Certificate.peerFromTransport(newSocket.transport).original.to_cryptography()
        self.assertEqual(served, second.certificate)
        old.sendLine("SAY still here")
        yield new.waitForLine(r"MSG \d+ old still here")


class HandshakeLimitTests(WebSocketTestCase):
    @inlineCallbacks
    def test_an_unregistered_websocket_counts_in_max_handshakes(self) -> Any:
        _service, _tcpPort, webPort = self.startWeb("--max-handshakes", "1")
        first, _ = yield self.connectWeb(webPort, "first")
        yield first.waitForLine(r"HELLO .*")
        deadline = reactor.seconds() + DEADLINE
        while True:  # a full room answers 503 until the first has had its grace, then makes way
            try:
                second, _ = yield self.connectWeb(webPort, "second")
                break
            except ConnectionError as error:
                self.assertIn("503", str(error))
                self.assertLess(reactor.seconds(), deadline, "the room never made way")
                yield deferLater(reactor, 0.05, lambda: None)
        yield first.waitForLine(r"ERR 503 too many connections registering")
        yield second.waitForLine(r"HELLO .*")


class SlowConsumerTests(WebSocketTestCase):
    @inlineCallbacks
    def test_a_websocket_that_never_reads_is_cut_as_slow(self) -> Any:
        _service, tcpPort, webPort = self.startWeb(
            "--sendq-soft", "4096", "--sendq-max", "65536", "--ping", "1", "--timeout", "5", "--rate", "0"
        )
        stuck = yield self.connectNotReading(webPort, "stuck")
        yield self.register(stuck.lines, "stuck")
        watcher = yield self.connect(tcpPort, "watcher", maxStored=80)
        yield self.register(watcher, "watcher")
        flooder = yield self.connect(tcpPort, "flooder", maxStored=80)
        yield self.register(flooder, "flooder")
        stuck.transport.pauseProducing()
        flood = Flood(flooder, 4000, 16)
        loop = LoopingCall(flood.tick)
        loop.start(0.005)
        try:
            yield watcher.waitForLine(r"LEFT \d+ stuck slow")
        finally:
            loop.stop()

    @inlineCallbacks
    def connectNotReading(self, port: int, name: str) -> Any:
        """A WebSocket client whose socket has a small receive buffer from the start."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(DEADLINE)
            sock.connect(("127.0.0.1", port))
            sock.setblocking(False)
            factory = wsFactory(f"ws://127.0.0.1:{port}/ws")
            built: list[Any] = []
            original = factory.buildProtocol

            def buildProtocol(addr: Any) -> Any:
                protocol = original(addr)
                protocol.lines = LineClient(name, answerPings=True, maxStored=80)
                built.append(protocol)
                return protocol

            factory.buildProtocol = buildProtocol
            cast(IReactorSocket, reactor).adoptStreamConnection(sock.fileno(), socket.AF_INET, factory)
        finally:
            sock.close()
        socket_ = built[0]
        yield within(socket_.opened, DEADLINE, f"{name}: the WebSocket handshake")
        self.clients.append(socket_.lines)
        return socket_


class OperationsTests(WebSocketTestCase):
    @inlineCallbacks
    def test_connections_and_metrics_show_websockets_with_their_listener(self) -> Any:
        service = self.startService("--listen", LOOPBACK, "--web", LOOPBACK, "--metrics", LOOPBACK)
        client, _ = yield self.connectWeb(webPortOf(service), "shown")
        yield self.register(client, "shown")
        metricsPort = httpPortOf(service)
        answer = yield httpRequest(metricsPort, "GET", "/connections")
        [row] = json.loads(answer.body)
        self.assertEqual((row["nick"], row["listener"]), ("shown", "web:" + LOOPBACK))
        self.assertIsInstance(row["kernel_send_queue_bytes"], int)
        answer = yield httpRequest(metricsPort, "GET", "/metrics")
        self.assertIn(f'hbchat_connections_open{{listener="web:{LOOPBACK}"}} 1.0', answer.body.decode())
        answer = yield httpRequest(metricsPort, "GET", "/readyz")
        self.assertEqual(answer.status, 200)
