"""
Socket activation: ``--listen systemd:...`` serves on a socket inherited from systemd.

A small launcher does what systemd does: it binds the socket as descriptor 3, sets
LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID (its own PID) and execs twistd, which keeps it.
systemd's ``ListenStream=6464`` is a dual-stack IPv6 socket (AF_INET6, IPV6_V6ONLY off,
bound to ``[::]``); it is made here the same way, and by systemd's own
``systemd-socket-activate`` where that is installed (Debian's ``systemd`` package; under
CI=true its absence is a failure, not a skip).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial import unittest
from twisted.trial.unittest import SynchronousTestCase

from hbchat.server.activation import socket_family, with_real_family
from tests.test_integration import DEADLINE, LineClient, within
from tests.test_twistd import TWISTD, TwistdProcess, freePort

LAUNCHER = """
import os, socket, sys
port, twistd, kind, listen = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
if kind == "dual-stack":  # as systemd makes ListenStream=6464
    listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    address = ("::", port)
else:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    address = ("127.0.0.1", port)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(address)
listener.listen(128)
os.dup2(listener.fileno(), 3)
os.set_inheritable(3, True)
os.environ.update(LISTEN_FDS="1", LISTEN_FDNAMES="hbchat.socket", LISTEN_PID=str(os.getpid()))
os.execv(twistd, [twistd, "-n", "--pidfile=", "hbchat"] + listen)
"""

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")


class ActivatedServerTestCase(unittest.TestCase):
    def spawn(self, argv: list[str]) -> tuple[TwistdProcess, Any]:
        process = TwistdProcess()
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        transport = reactor.spawnProcess(
            process, argv[0], argv, env=dict(os.environ), path=directory, childFDs={0: "w", 1: "r", 2: "r"}
        )

        def stop() -> Any:
            if process.reason is None:
                transport.signalProcess("KILL")
                return process.whenEnded()
            return None

        self.addCleanup(stop)
        return process, transport

    def launch(self, kind: str, port: int, *listen: str) -> tuple[TwistdProcess, Any]:
        if TWISTD is None:
            self.fail("twistd is not installed beside this Python")
        return self.spawn([sys.executable, "-c", LAUNCHER, str(port), TWISTD, kind, *listen])

    @inlineCallbacks
    def connectWhenBound(self, port: int, name: str) -> Any:
        """A client on 127.0.0.1 (IPv4); the first one may have to wait for the socket to exist."""
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=DEADLINE)
        deadline = reactor.seconds() + DEADLINE
        while True:
            client = LineClient(name)
            try:
                yield within(connectProtocol(endpoint, client), DEADLINE, f"{name}: connecting")
            except Exception:
                if reactor.seconds() > deadline:
                    raise
                yield task.deferLater(reactor, 0.1, lambda: None)
                continue
            self.addCleanup(client.disconnect)
            return client

    @inlineCallbacks
    def checkIPv4LoopbackClients(self, port: int, process: TwistdProcess, transport: Any) -> Any:
        """
        Three clients from 127.0.0.1 under --max-per-ip 1 (the launch's): all get HELLO
        (loopback is exempt), one chats, and the log names each as 127.0.0.1:port.
        """
        clients = []
        for n in range(3):
            client = yield self.connectWhenBound(port, f"c{n}")
            clients.append(client)
        for client in clients:
            yield client.waitForLine(r"HELLO hbchat/1 .*")
        first = clients[0]
        first.sendLine("NICK activated")
        yield first.waitForLine(r"WELCOME activated .*")
        first.sendLine("SAY through an inherited socket")
        yield first.waitForLine(r"MSG \d+ activated through an inherited socket")
        transport.signalProcess("TERM")
        yield within(process.whenEnded(), DEADLINE, f"twistd stopping\n{process.output()}")
        output = process.output()
        self.assertNotIn("Traceback", output)
        self.assertNotIn("ERR 503", output)
        peers = re.findall(r"connection from (\S+)", output)
        self.assertEqual(len(peers), 3, output)
        for peer in peers:
            self.assertRegex(peer, r"^127\.0\.0\.1:\d+$", output)
        return output


class SocketActivationTests(ActivatedServerTestCase):
    @inlineCallbacks
    def test_serves_on_an_inherited_ipv4_socket(self) -> Any:
        port = freePort()
        process, transport = self.launch("ipv4", port, "--listen", "systemd:domain=INET:index=0", "--max-per-ip", "1")
        yield self.checkIPv4LoopbackClients(port, process, transport)

    @inlineCallbacks
    def test_a_dual_stack_socket_named_inet_is_adopted_as_inet6_with_real_ipv4_peers(self) -> Any:
        port = freePort()
        process, transport = self.launch(
            "dual-stack", port, "--listen", "systemd:domain=INET:index=0", "--max-per-ip", "1"
        )
        output = yield self.checkIPv4LoopbackClients(port, process, transport)
        self.assertIn("the inherited socket is INET6, not INET: adopted as INET6", output)

    @inlineCallbacks
    def test_a_dual_stack_socket_named_inet6_shows_ipv4_peers_as_ipv4_and_exempts_loopback(self) -> Any:
        port = freePort()
        process, transport = self.launch(
            "dual-stack", port, "--listen", "systemd:domain=INET6:index=0", "--max-per-ip", "1"
        )
        yield self.checkIPv4LoopbackClients(port, process, transport)

    @inlineCallbacks
    def test_systemctl_reload_without_ssl_listeners_is_logged_and_no_death(self) -> Any:
        """The unit's ExecReload (kill -HUP $MAINPID), on a socket made as systemd makes it."""
        port = freePort()
        process, transport = self.launch("dual-stack", port, "--listen", "systemd:domain=INET6:index=0")
        client = yield self.connectWhenBound(port, "activated")
        yield client.waitForLine(r"HELLO hbchat/1 .*")
        client.sendLine("NICK activated")
        yield client.waitForLine(r"WELCOME activated .*")
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
    def socketActivated(self, *hbchat: str) -> Any:
        """twistd hbchat with these options, on a socket made by systemd-socket-activate --listen=<port>."""
        if SOCKET_ACTIVATE is None:
            message = "systemd-socket-activate is not installed (Debian package systemd)"
            if os.environ.get("CI") == "true":
                self.fail(message)
            raise unittest.SkipTest(message)
        if TWISTD is None:
            self.fail("twistd is not installed beside this Python")
        port = freePort()
        # It passes its children only PATH, TERM and what --setenv names.
        passed = [f"--setenv={name}" for name in ("PYTHONPATH", "HOME", "LANG") if name in os.environ]
        argv = [SOCKET_ACTIVATE, f"--listen={port}", "--fdname=hbchat.socket", *passed, TWISTD]
        process, transport = self.spawn([*argv, "-n", "--pidfile=", "hbchat", *hbchat, "--max-per-ip", "1"])
        # systemd-socket-activate starts twistd at the first connection (systemd, at once).
        output = yield self.checkIPv4LoopbackClients(port, process, transport)
        return output

    @inlineCallbacks
    def test_systemd_socket_activate_with_domain_inet(self) -> Any:
        output = yield self.socketActivated("--listen", "systemd:domain=INET:index=0")
        self.assertIn("the inherited socket is INET6, not INET: adopted as INET6", output)

    @inlineCallbacks
    def test_systemd_socket_activate_with_the_service_units_options(self) -> Any:
        options = ["tcp:0:interface=127.0.0.1" if option.startswith("tcp:9464") else option for option in unitOptions()]
        self.assertIn("systemd:domain=INET6:index=0", options)
        yield self.socketActivated(*options)


def unitOptions() -> list[str]:
    """The hbchat options of docs/systemd/hbchat.service's ExecStart."""
    named = os.environ.get("HBCHAT_CHECKOUT")
    root = Path(named) if named else Path(__file__).resolve().parent.parent
    unit = root / "docs" / "systemd" / "hbchat.service"
    if not unit.is_file():
        if os.environ.get("CI") == "true" or named:
            raise AssertionError(f"no {unit}")
        raise unittest.SkipTest(f"no source checkout at {root}")
    text = unit.read_text(encoding="utf-8").replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    words = shlex.split(line.removeprefix("ExecStart="))
    return words[words.index("hbchat") + 1 :]


class RealFamilyTests(SynchronousTestCase):
    def test_the_family_is_read_from_the_socket(self) -> None:
        import socket

        for family in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                self.assertEqual(socket_family(sock.fileno()), family)
                sock.getsockname()  # still open

    def test_an_adopted_endpoint_takes_the_sockets_family(self) -> None:
        import socket

        from twisted.internet.endpoints import AdoptedStreamServerEndpoint

        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            endpoint = AdoptedStreamServerEndpoint(reactor, sock.fileno(), socket.AF_INET)
            self.assertIs(with_real_family(endpoint, "systemd:domain=INET:index=0"), endpoint)
            self.assertEqual(endpoint.addressFamily, socket.AF_INET6)

    def test_other_endpoints_are_left_alone(self) -> None:
        from twisted.internet.endpoints import TCP4ServerEndpoint

        endpoint = TCP4ServerEndpoint(reactor, 0)
        self.assertIs(with_real_family(endpoint, "tcp:0"), endpoint)
