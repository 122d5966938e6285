"""What the server holds unsent for a connection: its transport's buffer and the kernel's send queue."""

from __future__ import annotations

import select
import socket
import time

from twisted.trial.unittest import SynchronousTestCase

from hbchat.server.sendq import kernel_unsent, send_queue


class TwistedLikeTransport:
    """The bookkeeping of Twisted's tcp.Connection that the meter reads, over a real socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.dataBuffer = b""
        self.offset = 0
        self._tempDataLen = 0

    def getHandle(self) -> socket.socket:
        return self.sock


class SendQueueTests(SynchronousTestCase):
    def setUp(self) -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(listener.close)
        self.reader = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(self.reader.close)
        self.reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.reader.connect(listener.getsockname())
        self.writer, _ = listener.accept()
        self.addCleanup(self.writer.close)
        self.writer.setblocking(False)

    def fill(self) -> int:
        """Write to the reader, which does not read, until the kernel takes no more."""
        sent = 0
        try:
            while True:
                sent += self.writer.send(b"x" * 65536)
        except BlockingIOError:
            return sent

    def test_the_kernels_send_buffer_is_capped_at_the_size_given(self) -> None:
        send_queue(TwistedLikeTransport(self.writer), 64 * 1024)
        # SO_SNDBUF is given half: Linux doubles it for its bookkeeping.
        self.assertEqual(self.writer.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF), 64 * 1024)

    def test_a_capped_send_buffer_holds_about_that_much_for_a_peer_that_does_not_read(self) -> None:
        send_queue(TwistedLikeTransport(self.writer), 64 * 1024)
        self.fill()
        self.assertLessEqual(kernel_unsent(self.writer), 64 * 1024 + 64 * 1024)

    def test_what_the_peer_has_not_acknowledged_is_counted_with_the_transports_buffer(self) -> None:
        transport = TwistedLikeTransport(self.writer)
        sendq = send_queue(transport, 64 * 1024)
        assert sendq is not None
        self.assertEqual(sendq.unsent(), 0)
        self.fill()
        inKernel = kernel_unsent(self.writer)
        self.assertGreater(inKernel, 0)
        transport.dataBuffer = b"y" * 1000
        transport.offset = 100
        transport._tempDataLen = 50
        self.assertEqual(sendq.unsent(), inKernel + 950)

    def test_what_the_peer_reads_is_no_longer_counted(self) -> None:
        self.fill()
        self.reader.setblocking(False)
        # What the reader takes frees room the kernel refills from the writer's queue (on a
        # loaded machine, a while later): read whatever arrives until the queue has shrunk,
        # with a generous deadline.
        deadline = time.monotonic() + 30
        while kernel_unsent(self.writer) >= 1 << 20 and time.monotonic() < deadline:
            select.select([self.reader], [], [], 0.1)
            try:
                while self.reader.recv(1 << 20):
                    pass
            except BlockingIOError:
                pass
        self.assertLess(kernel_unsent(self.writer), 1 << 20)

    def test_a_transport_without_a_socket_has_no_meter(self) -> None:
        self.assertIsNone(send_queue(object(), 64 * 1024))

    def test_a_closed_socket_holds_nothing(self) -> None:
        sock = socket.socket()
        sock.close()
        self.assertEqual(kernel_unsent(sock), 0)
