"""Whatever bytes arrive, in whatever pieces, the server neither crashes nor stops serving others."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from hbchat.testing import FakeServer

VERBS = [b"NICK ", b"SAY ", b"TELL ", b"WHO", b"QUIT", b"PING ", b"PONG ", b"nick ", b"RESUME ", b""]

chunk = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda verb, tail: verb + tail, st.sampled_from(VERBS), st.binary(max_size=40)),
    st.sampled_from([b"\n", b"\r\n", b"\r", b" ", b"\xff", b"x" * 300]),
)


class ArbitraryInputTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(chunks=st.lists(chunk, max_size=30), ticks=st.lists(st.floats(0, 5), max_size=5))
    def test_arbitrary_bytes_in_arbitrary_pieces_never_hurt_other_clients(
        self, chunks: list[bytes], ticks: list[float]
    ) -> None:
        server = FakeServer(max_line=256, ping=2, timeout=10)
        alice = server.registered("alice")
        fuzzer = server.connect()
        for index, data in enumerate(chunks):
            if fuzzer.closing:
                fuzzer.finishClose()
                break
            fuzzer.send(data)
            if index < len(ticks):
                server.advance(ticks[index])
                alice.sendLine("PONG")
        alice.received()
        alice.sendLine("SAY still served")
        lines = alice.received()
        self.assertTrue(any(line.endswith(b" alice still served") for line in lines), lines)
        alice.sendLine("WHO")
        self.assertTrue(alice.received()[-1].startswith(b"USERS "))
        self.assertLessEqual(len(fuzzer.protocol._framer._pending), 257)
