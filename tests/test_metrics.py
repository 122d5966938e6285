"""
The server's counters and their Prometheus exposition, on a fake server and a fake clock.

Each scrape is parsed back with prometheus-client's own parser (and, where it is
installed, checked by ``promtool check metrics``), so what is asserted is what Prometheus
would read.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial.unittest import FailTest, SkipTest, SynchronousTestCase

from hbchat.config import ServerConfig
from hbchat.ops.metrics import chat_registry
from hbchat.ops.observed import ObservedChatFactory as ChatFactory
from hbchat.ops.stats import CLOSE_REASONS
from hbchat.server.listeners import Listener
from hbchat.testing import FakePeer, FakeServer, RecordingTransport


def sample_key(name: str, labels: dict[str, str]) -> str:
    if not labels:
        return name
    return name + "{" + ",".join(f"{key}={value}" for key, value in sorted(labels.items())) + "}"


def scrape(factory: ChatFactory) -> dict[str, float]:
    """Every sample of the exposition, as ``name{label=value,...}``: value."""
    text = generate_latest(chat_registry(factory)).decode("utf-8")
    return {
        sample_key(sample.name, sample.labels): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def findPromtool() -> str:
    """promtool's path; a skip without it, or a failure in CI (which must have it)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            raise FailTest("promtool is not on PATH; .ci/run unpacks it from Debian's prometheus package")
        raise SkipTest("promtool not installed (Debian: apt-get install prometheus)")
    return promtool


def answerPings(peer: FakePeer) -> None:
    for line in peer.received():
        if line.startswith(b"PING"):
            peer.sendLine(b"PONG" + line[4:])


class CountersTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer(ping=10, timeout=30, history=3, max_clients=3)
        self.factory = self.server.factory

    def test_verdicts_put_off_to_ping_after_a_stall_are_counted(self) -> None:
        peer = self.server.registered("carol")
        self.server.advance(90)  # a stall of three timeouts: no PING went out meanwhile
        self.server.turn()
        self.assertEqual(scrape(self.server.factory)["hbchat_timeouts_asked_total"], 1)
        answerPings(peer)
        self.server.advance(10)
        self.server.turn()
        values = scrape(self.server.factory)
        self.assertEqual(values["hbchat_timeouts_spared_total"], 1)
        self.assertEqual(values["hbchat_idle_timeouts_total"], 0)

    def test_a_fresh_server_counts_nothing(self) -> None:
        values = scrape(self.factory)
        self.assertEqual(values["hbchat_users_registered"], 0)
        self.assertEqual(values["hbchat_pings_sent_total"], 0)
        self.assertEqual(values["hbchat_ping_rtt_seconds_count"], 0)
        self.assertEqual(values["hbchat_max_clients"], 3)
        for reason in CLOSE_REASONS:
            self.assertEqual(values[f"hbchat_connections_closed_total{{reason={reason}}}"], 0)
        for outcome in ("complete", "partial", "unknown"):
            self.assertEqual(values[f"hbchat_resumes_total{{outcome={outcome}}}"], 0)
        self.assertEqual(values["hbchat_connections_stalled"], 0)
        self.assertEqual(values["hbchat_unsent_bytes"], 0)

    def test_congested_connections_that_take_nothing_are_counted_as_stalled(self) -> None:
        self.server.registered("alice")
        bob = self.server.registered("bob")
        setattr(bob.protocol, "delivered", lambda: 1000)  # noqa: B010 (its peer takes nothing more)
        bob.protocol.pauseProducing()
        self.server.advance(0.5)
        self.assertEqual(scrape(self.factory)["hbchat_connections_stalled"], 0)
        self.server.advance(0.5)
        self.assertEqual(scrape(self.factory)["hbchat_connections_stalled"], 1)

    def test_counters_move_as_two_users_chat_and_one_times_out(self) -> None:
        alice = self.server.registered("alice")
        bob = self.server.registered("bob")
        values = scrape(self.factory)
        self.assertEqual(values["hbchat_users_registered"], 2)
        self.assertEqual(values["hbchat_connections_open{listener=-}"], 2)
        self.assertEqual(values["hbchat_events_broadcast_total"], 2)  # two JOINs
        # alice's JOIN to alice, bob's JOIN to both
        self.assertEqual(values["hbchat_deliveries_total"], 3)

        # alice answers every PING a quarter second later; bob never does.
        for _ in range(35):
            lines = alice.received()
            self.server.advance(0.25)
            for line in lines:
                if line.startswith(b"PING"):
                    alice.sendLine(b"PONG" + line[4:])
            self.server.advance(0.75)
        self.assertTrue(bob.aborted)
        bob.finishClose()
        alice.sendLine("SAY hello")

        values = scrape(self.factory)
        self.assertEqual(values["hbchat_idle_timeouts_total"], 1)
        self.assertEqual(values["hbchat_connections_closed_total{reason=timeout}"], 1)
        self.assertEqual(values["hbchat_users_registered"], 1)
        self.assertEqual(values["hbchat_sessions_in_grace"], 1)
        self.assertEqual(values["hbchat_connections_open{listener=-}"], 1)
        # PINGs at 10, 20 and 30 to alice, answered; at 10, 20 and 30 to bob too (his
        # silence is judged on the turn after his timer fires at 30), still counted after
        # he is gone.
        self.assertEqual(values["hbchat_pings_sent_total"], 3 + 3)
        self.assertEqual(values["hbchat_pongs_received_total"], 3)
        self.assertEqual(values["hbchat_ping_rtt_seconds_count"], 3)
        self.assertAlmostEqual(values["hbchat_ping_rtt_seconds_sum"], 0.75)
        self.assertEqual(values["hbchat_ping_rtt_seconds_bucket{le=0.1}"], 0)
        self.assertEqual(values["hbchat_ping_rtt_seconds_bucket{le=0.25}"], 3)
        self.assertEqual(values["hbchat_ping_rtt_seconds_bucket{le=+Inf}"], 3)
        # JOIN, JOIN, LEFT (to alice), MSG (to alice)
        self.assertEqual(values["hbchat_events_broadcast_total"], 4)
        self.assertEqual(values["hbchat_deliveries_total"], 5)

    def test_bytes_in_and_out_are_counted_across_closes(self) -> None:
        alice = self.server.connect()
        alice.sendLine("NICK alice")  # 11 bytes in
        alice.sendLine("PING x")  # 7 bytes in
        received = b"".join(line + b"\n" for line in alice.received())
        values = scrape(self.factory)
        self.assertEqual(values["hbchat_received_bytes_total"], 18)
        self.assertEqual(values["hbchat_sent_bytes_total"], len(received))
        alice.sendLine("QUIT")  # 5 more, and BYE quit
        received += b"".join(line + b"\n" for line in alice.received())
        alice.finishClose()
        values = scrape(self.factory)
        self.assertEqual(values["hbchat_received_bytes_total"], 23)
        self.assertEqual(values["hbchat_sent_bytes_total"], len(received))
        self.assertEqual(values["hbchat_connections_closed_total{reason=quit}"], 1)

    def test_closes_are_counted_by_reason(self) -> None:
        quitter = self.server.registered("quitter")
        quitter.sendLine("QUIT")
        quitter.finishClose()
        unregistered = self.server.connect()
        self.server.advance(10)  # the registration timeout
        self.server.turn()  # judged on the next turn
        unregistered.finishClose()
        long_liner = self.server.registered("long")
        long_liner.send(b"x" * 5000)
        long_liner.finishClose()
        reset = self.server.registered("reset")
        reset.lose()
        # max_clients=3: reset's session is in grace, but its connection is gone
        peers = [self.server.connect() for _ in range(4)]
        self.assertEqual(peers[-1].received(), [b"ERR 503 server full"])
        peers[-1].finishClose()
        values = scrape(self.factory)
        expected = {"quit": 1, "register_timeout": 1, "line_too_long": 1, "error": 1, "full": 1}
        for reason in CLOSE_REASONS:
            self.assertEqual(values[f"hbchat_connections_closed_total{{reason={reason}}}"], expected.get(reason, 0))

        self.factory.shutdown()
        for peer in peers[:3]:
            peer.finishClose()
        self.assertEqual(scrape(self.factory)["hbchat_connections_closed_total{reason=shutdown}"], 3)
        self.assertEqual(scrape(self.factory)["hbchat_stopping"], 1)

    def test_slow_consumer_cuts_are_counted(self) -> None:
        server = FakeServer(ping=30, timeout=90)
        alice, bob, _carol = (server.registered(nick) for nick in ("alice", "bob", "carol"))
        server.factory.maxBacklog = 100
        bob.protocol.pauseProducing()
        for n in range(5):
            alice.sendLine(f"SAY message number {n} with some padding to fill the backlog")
        bob.finishClose()
        values = scrape(server.factory)
        self.assertEqual(values["hbchat_slow_consumer_cuts_total"], 1)
        self.assertEqual(values["hbchat_connections_closed_total{reason=slow}"], 1)

    def test_rate_limit_rejections_and_kicks_are_counted(self) -> None:
        server = FakeServer(ping=30, timeout=90, rate=1, burst=1)
        alice = server.registered("alice")
        server.advance(1)
        alice.sendLine("SAY one")
        alice.sendLine("SAY refused")
        values = scrape(server.factory)
        self.assertEqual(values["hbchat_rate_limit_rejections_total"], 1)
        alice.send(b"SAY again\n" * 10)
        alice.finishClose()
        values = scrape(server.factory)
        self.assertEqual(values["hbchat_rate_limit_rejections_total"], 11)
        self.assertEqual(values["hbchat_connections_closed_total{reason=kicked}"], 1)

    def test_resumes_are_counted_by_outcome(self) -> None:
        self.server = FakeServer(history=3)
        self.factory = self.server.factory
        alice = self.server.registered("alice")
        bob = self.server.connect()
        bob.received()
        token = bob.register("bob")[0].split(b" ")[2]
        bob.lose()
        back = self.server.connect()
        back.sendLine(b"RESUME " + token + b" 2")  # complete
        back.lose()
        for n in range(5):
            alice.sendLine(f"SAY {n}")  # history=3: the LEFT is gone
        again = self.server.connect()
        again.sendLine(b"RESUME " + token + b" 2")  # partial
        replaced = self.server.connect()
        replaced.sendLine(b"RESUME " + token + b" 99")  # takeover: complete
        self.server.connect().sendLine(b"RESUME nosuchtoken 0")
        values = scrape(self.factory)
        self.assertEqual(values["hbchat_resumes_total{outcome=complete}"], 2)
        self.assertEqual(values["hbchat_resumes_total{outcome=partial}"], 1)
        self.assertEqual(values["hbchat_resumes_total{outcome=unknown}"], 1)
        again.finishClose()
        self.assertEqual(scrape(self.factory)["hbchat_connections_closed_total{reason=replaced}"], 1)

    def test_connections_accepted_and_open_by_listener(self) -> None:
        factory = self.factory
        tcp, unix = Listener(factory, "tcp:6464"), Listener(factory, "unix:/run/hbchat.sock")
        tcp.doStart()
        for port, listener in enumerate((tcp, tcp, unix)):
            address = IPv4Address("TCP", "127.0.0.1", 50000 + port)
            listener.buildProtocol(address).makeConnection(RecordingTransport(peerAddress=address))
        values = scrape(factory)
        self.assertEqual(values["hbchat_connections_accepted_total{listener=tcp:6464}"], 2)
        self.assertEqual(values["hbchat_connections_accepted_total{listener=unix:/run/hbchat.sock}"], 1)
        self.assertEqual(values["hbchat_connections_open{listener=tcp:6464}"], 2)
        self.assertEqual(values["hbchat_connections_open{listener=unix:/run/hbchat.sock}"], 1)
        self.assertEqual(values["hbchat_listening{listener=tcp:6464}"], 1)
        self.assertEqual(values["hbchat_listening{listener=unix:/run/hbchat.sock}"], 0)
        tcp.doStop()
        self.assertEqual(scrape(factory)["hbchat_listening{listener=tcp:6464}"], 0)


class ExpositionTests(SynchronousTestCase):
    def busyFactory(self) -> ChatFactory:
        server = FakeServer(ping=1, timeout=3)
        alice = server.registered("alice")
        server.registered("bob")
        alice.sendLine("SAY hi")
        for _ in range(12):
            server.advance(0.5)
            answerPings(alice)
        return server.factory

    def test_every_hbchat_metric_is_named_by_the_conventions(self) -> None:
        text = generate_latest(chat_registry(self.busyFactory())).decode("utf-8")
        families = [family for family in text_string_to_metric_families(text) if family.name.startswith("hbchat_")]
        names = {family.name for family in families}
        for wanted in [
            "hbchat_connections_open",
            "hbchat_connections_accepted",
            "hbchat_users_registered",
            "hbchat_pings_sent",
            "hbchat_pongs_received",
            "hbchat_ping_rtt_seconds",
            "hbchat_idle_timeouts",
            "hbchat_timeouts_asked",
            "hbchat_slow_consumer_cuts",
            "hbchat_rate_limit_rejections",
            "hbchat_connections_closed",
            "hbchat_received_bytes",
            "hbchat_sent_bytes",
            "hbchat_events_broadcast",
            "hbchat_deliveries",
            "hbchat_resumes",
            "hbchat_reactor_lag_seconds",
        ]:
            self.assertIn(wanted, names)
        for family in families:
            self.assertTrue(family.documentation, family.name)
            if family.type == "counter":
                self.assertTrue(all(s.name.endswith("_total") for s in family.samples), family)
            if family.type == "histogram":
                self.assertTrue(family.name.endswith("_seconds"), family.name)
        # the text format is what Prometheus scrapes by default
        self.assertIn("# TYPE hbchat_pings_sent_total counter", text)
        self.assertIn('hbchat_ping_rtt_seconds_bucket{le="+Inf"}', text)

    def test_openmetrics_exposition_parses_too(self) -> None:
        text = generate_openmetrics(chat_registry(self.busyFactory())).decode("utf-8")
        families = {family.name: family for family in parse_openmetrics(text)}
        self.assertEqual(families["hbchat_pings_sent"].type, "counter")
        self.assertEqual(families["hbchat_ping_rtt_seconds"].unit, "seconds")
        self.assertTrue(text.endswith("# EOF\n"))

    def test_registries_are_per_server(self) -> None:
        first = FakeServer()
        first.registered("alice")
        second = FakeServer()
        self.assertEqual(scrape(first.factory)["hbchat_users_registered"], 1)
        self.assertEqual(scrape(second.factory)["hbchat_users_registered"], 0)

    def test_promtool_accepts_the_exposition(self) -> None:
        promtool = findPromtool()
        text = generate_latest(chat_registry(self.busyFactory()))
        result = subprocess.run(
            [promtool, "check", "metrics"], input=text, capture_output=True, timeout=60, check=False
        )
        # promtool exits 0 with no output when the exposition is well-formed and its names
        # and help texts follow the conventions; lint problems exit 3 with one line each.
        output = (result.stdout + result.stderr).decode(errors="replace")
        self.assertEqual((result.returncode, output), (0, ""))


class LagInMetricsTests(SynchronousTestCase):
    def test_the_factory_measures_lag_while_it_listens(self) -> None:
        clock = Clock()
        factory = ChatFactory(ServerConfig(), clock)
        self.assertFalse(factory.lag.running)
        factory.doStart()
        self.assertTrue(factory.lag.running)
        clock.advance(0.25)
        clock.advance(2.25)  # a 2 s stall
        values = scrape(factory)
        self.assertEqual(values["hbchat_reactor_lag_seconds_count"], 2)
        self.assertEqual(values["hbchat_reactor_lag_seconds_bucket{le=2.5}"], 2)
        self.assertEqual(values["hbchat_reactor_lag_seconds_bucket{le=1.0}"], 1)
        self.assertAlmostEqual(values["hbchat_reactor_lag_recent_max_seconds"], 2.0)
        factory.doStop()
        self.assertFalse(factory.lag.running)
        self.assertEqual(clock.getDelayedCalls(), [])
