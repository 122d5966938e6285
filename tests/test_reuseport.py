"""
``--reuse-port`` (hbchat.server.reuseport): which listeners take it (pure), sockets that share
a port in this process, and two real ``twistd hbchat`` processes serving one port, TLS included.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory, Protocol
from twisted.trial import unittest
from twisted.trial.unittest import SynchronousTestCase

from hbchat.config import LISTEN_BACKLOG, ConfigError
from hbchat.server.reuseport import PortAddress, ReusePortEndpoint, check_reuse_port, reuse_port_address
from hbchat.testing import FakeServer
from hbchat.web.origins import OriginPolicy
from hbchat.web.service import web_service
from tests.test_tls import clientOptions
from tests.test_twistd import TwistdProcess, TwistdTestCase, freePort
from tests.test_twistd_tls import TLSProcessTestCase
from tests.tlscerts import CertificateAuthority


class AddressTests(SynchronousTestCase):
    def test_a_tcp_port_on_every_interface(self) -> None:
        self.assertEqual(reuse_port_address("tcp:6464"), PortAddress(6464, "", LISTEN_BACKLOG, socket.AF_INET))

    def test_interface_and_backlog_are_read(self) -> None:
        self.assertEqual(
            reuse_port_address("tcp:6464:interface=127.0.0.1:backlog=50"),
            PortAddress(6464, "127.0.0.1", 50, socket.AF_INET),
        )

    def test_an_ipv6_interface_listens_on_ipv6(self) -> None:
        self.assertEqual(reuse_port_address(r"tcp:6464:interface=\:\:1").family, socket.AF_INET6)

    def test_tcp6_listens_on_every_ipv6_interface(self) -> None:
        self.assertEqual(reuse_port_address("tcp6:6464"), PortAddress(6464, "::", LISTEN_BACKLOG, socket.AF_INET6))

    def test_unix_is_refused(self) -> None:
        with self.assertRaisesRegex(ConfigError, r"--reuse-port applies to tcp: and ssl: listeners only"):
            check_reuse_port(("tcp:6464", "unix:/run/hbchat.sock"))

    def test_systemd_is_refused(self) -> None:
        with self.assertRaisesRegex(ConfigError, r"not 'systemd:domain=INET6:index=0'"):
            check_reuse_port(("systemd:domain=INET6:index=0",))

    def test_ssl_is_accepted(self) -> None:
        check_reuse_port(("ssl:6697:privateKey=key.pem", "tcp:6464"))

    def test_an_unknown_parameter_is_refused(self) -> None:
        with self.assertRaisesRegex(ConfigError, "unknown parameter 'bogus'"):
            reuse_port_address("tcp:6464:bogus=1")


class Nothing(Protocol):
    pass


class EndpointTests(unittest.TestCase):
    @inlineCallbacks
    def test_two_listeners_share_one_port(self) -> Any:
        address = PortAddress(freePort(), "127.0.0.1", 50, socket.AF_INET)
        factory = Factory.forProtocol(Nothing)
        first = yield ReusePortEndpoint(reactor, address).listen(factory)
        self.addCleanup(first.stopListening)
        second = yield ReusePortEndpoint(reactor, address).listen(factory)
        self.addCleanup(second.stopListening)
        self.assertEqual(first.getHost().port, second.getHost().port)

    def test_two_web_listeners_share_one_port(self) -> None:
        """--reuse-port holds for --web endpoints too: two servers' pages on one port."""
        port = freePort()
        services = [
            web_service(FakeServer().factory, f"tcp:{port}:interface=127.0.0.1", reactor, OriginPolicy(()), None, True)
            for _ in range(2)
        ]
        for service in services:
            service.startService()
            self.addCleanup(service.stopService)
        ports = [cast(Any, service.endpoint).listener.port for service in services]  # set once listening
        self.assertEqual([listening.getHost().port for listening in ports], [port, port])

    def test_a_web_unix_endpoint_is_refused_with_reuse_port(self) -> None:
        with self.assertRaisesRegex(ConfigError, r"not 'unix:web.sock' \(--listen, --web\)"):
            check_reuse_port(("tcp:6464", "unix:web.sock"))

    @inlineCallbacks
    def test_a_port_held_without_reuse_port_cannot_be_shared(self) -> Any:
        holder = socket.socket()
        self.addCleanup(holder.close)
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        address = PortAddress(holder.getsockname()[1], "127.0.0.1", 50, socket.AF_INET)
        with self.assertRaises(CannotListenError):
            yield ReusePortEndpoint(reactor, address).listen(Factory.forProtocol(Nothing))


class ReusePortOptionTests(TwistdTestCase):
    def test_reuse_port_with_a_unix_listener_is_one_line_and_exit_1(self) -> None:
        result = self.runTwistd("-n", "--pidfile=", "hbchat", "--reuse-port", "--listen", "unix:hbchat.sock")
        self.assertEqual(result.returncode, 1, result)
        self.assertEqual(
            result.stderr.splitlines(),
            [
                "twistd hbchat: error: --reuse-port applies to tcp: and ssl: listeners only, not 'unix:hbchat.sock' "
                "(--listen, --web) (see: twistd hbchat --help)"
            ],
        )


class TwoProcessTests(TLSProcessTestCase):
    """Two ``twistd hbchat --reuse-port`` on one port: the kernel gives each some of the connections."""

    def spawnServer(self, port: int, description: str, directory: str) -> TwistdProcess:
        process = TwistdProcess()
        argv = [self.twistd, "-n", "--pidfile=", "hbchat", "--reuse-port", "--listen", description]
        transport = reactor.spawnProcess(process, self.twistd, argv, env=dict(os.environ), path=directory)
        self.addCleanup(self._kill, process, transport)
        return process

    @inlineCallbacks
    def registerUntilBothServed(self, processes: list[TwistdProcess], connect: Any) -> Any:
        """Connect and register clients, at most 64, until each process has registered one."""
        for n in range(64):
            client = yield connect(n)
            yield self.register(client, f"user{n}")
            served = [len(re.findall(rb"registered from", process.out)) for process in processes]
            if all(served):
                return served
        self.fail("64 connections, and one process got none:\n" + "\n".join(p.output() for p in processes))

    @inlineCallbacks
    def test_two_processes_serve_one_tcp_port(self) -> Any:
        port = freePort()
        processes = [self.spawnServer(port, f"tcp:{port}:interface=127.0.0.1", self.freshDirectory()) for _ in "ab"]
        for process in processes:
            yield self.waitForOutput(process, f"starting on {port}")
        served = yield self.registerUntilBothServed(processes, lambda n: self._connect(processes[0], port))
        self.assertTrue(all(served), served)
        for process in processes:
            self.assertNotIn(b"Traceback", process.out + process.err, process.output())

    @inlineCallbacks
    def test_two_processes_serve_one_ssl_port(self) -> Any:
        ca = CertificateAuthority()
        directory = Path(self.freshDirectory())
        cert, key = ca.server("localhost").write(directory, "server")
        port = freePort()
        description = f"ssl:{port}:interface=127.0.0.1:privateKey={key}:certKey={cert}"
        processes = [self.spawnServer(port, description, str(directory)) for _ in "ab"]
        for process in processes:
            yield self.waitForOutput(process, f"starting on {port}")
        served = yield self.registerUntilBothServed(
            processes, lambda n: self.connectTLS(processes[0], port, f"user{n}", clientOptions(ca))
        )
        self.assertTrue(all(served), served)


class TemplateUnitTests(SynchronousTestCase):
    """docs/systemd/hbchat@.service: N instances on one port, each with its --state."""

    def unitText(self) -> str:
        # tox runs a copy of tests/ and names the checkout in HBCHAT_CHECKOUT.
        checkout = Path(os.environ.get("HBCHAT_CHECKOUT") or Path(__file__).resolve().parent.parent)
        unit = checkout / "docs" / "systemd" / "hbchat@.service"
        if not unit.is_file():
            if os.environ.get("CI") == "true":
                raise AssertionError(f"no {unit}")
            raise unittest.SkipTest(f"no source checkout with {unit}")
        return unit.read_text(encoding="utf-8")

    def options(self, instance: str) -> list[str]:
        text = self.unitText().replace("\\\n", " ").replace("%i", instance)
        (line,) = [line for line in text.splitlines() if line.startswith("ExecStart=")]
        words = line.removeprefix("ExecStart=").split()
        # $HBCHAT_CLUSTER is empty unless a drop-in sets it: systemd drops the word.
        return [word for word in words[words.index("hbchat") + 1 :] if word != "$HBCHAT_CLUSTER"]

    def test_the_instances_options_are_valid(self) -> None:
        from hbchat.server.tap import ServerOptions

        options = ServerOptions()
        options.parseOptions(self.options("2"))
        self.assertTrue(options["reuse-port"])
        self.assertEqual(options["state"], "/var/lib/hbchat/2/chat.state")
        self.assertEqual(options["metrics"], "tcp:9462:interface=127.0.0.1")

    def test_the_state_file_is_in_the_instances_state_directory(self) -> None:
        text = self.unitText()
        self.assertIn("StateDirectory=hbchat/%i\n", text)
        self.assertIn("--state /var/lib/hbchat/%i/chat.state", text)
