"""Keepalive settings reach the socket under plain and wrapped transports."""

from __future__ import annotations

import socket

from twisted.trial.unittest import SynchronousTestCase

from hbchat.sockopts import enable_keepalive, find_socket, keepalive_settings


class FakeTCPTransport:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def getHandle(self) -> socket.socket:
        return self.sock


class FakeTLSTransport:
    """Like TLSMemoryBIOProtocol: its handle is not a socket; the TCP transport is below it."""

    def __init__(self, below: FakeTCPTransport) -> None:
        self.transport = below

    def getHandle(self) -> object:
        return object()


class KeepaliveTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(self.sock.close)

    def test_settings_follow_the_idle_timeout(self) -> None:
        self.assertEqual(keepalive_settings(90), {"idle": 90, "interval": 30, "count": 3, "user_timeout_ms": 90000})
        self.assertEqual(keepalive_settings(0.5)["idle"], 1)

    def test_unacknowledged_output_may_be_given_longer_than_the_idle_timeout(self) -> None:
        self.assertEqual(keepalive_settings(15, user_timeout=90)["user_timeout_ms"], 90000)
        self.assertEqual(keepalive_settings(15, user_timeout=90)["idle"], 15)

    def test_keepalive_is_enabled_on_a_tcp_socket(self) -> None:
        self.assertTrue(enable_keepalive(FakeTCPTransport(self.sock), 90))
        self.assertEqual(self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE), 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            self.assertEqual(self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE), 90)
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            self.assertEqual(self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT), 90000)

    def test_socket_is_found_below_a_tls_wrapper(self) -> None:
        self.assertIs(find_socket(FakeTLSTransport(FakeTCPTransport(self.sock))), self.sock)

    def test_unix_sockets_are_left_alone(self) -> None:
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(unix.close)
        self.assertFalse(enable_keepalive(FakeTCPTransport(unix), 90))

    def test_transport_without_a_socket_is_left_alone(self) -> None:
        self.assertFalse(enable_keepalive(object(), 90))
