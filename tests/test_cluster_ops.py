"""What an operator sees of a cluster node: hbchat_cluster_* metrics, /readyz, /connections."""

from __future__ import annotations

import subprocess
from types import SimpleNamespace
from typing import Any, cast

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import inlineCallbacks

from hbchat.cluster.chat import ClusterChat
from hbchat.ops.metrics import chat_registry
from hbchat.ops.web import describe_connection, readiness
from tests.clusternodes import ClusterTestCase, until
from tests.redisserver import RedisServer
from tests.test_metrics import findPromtool


def samples(factory: Any) -> dict[str, float]:
    text = generate_latest(chat_registry(factory)).decode("utf-8")
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("hbchat_cluster")
    }


class ClusterOpsTests(ClusterTestCase):
    @inlineCallbacks
    def twoNodes(self) -> Any:
        redis = RedisServer(self)
        yield redis.start()
        a, port_a = yield self.startNode(redis.url, "a")
        b, port_b = yield self.startNode(redis.url, "b")
        return redis, (a, port_a), (b, port_b)

    @inlineCallbacks
    def test_metrics_count_nodes_and_appends(self) -> Any:
        """Nodes alive, Redis up, round trips and append latencies observed, no lag once delivered."""
        _, (a, port_a), _ = yield self.twoNodes()
        ann, _, _ = yield self.join(port_a, "ann")
        ann.sendLine("SAY counted")
        yield ann.waitForLine(r"MSG \d+ ann counted")
        yield until(lambda: samples(a)["hbchat_cluster_nodes_alive"] == 2, "both nodes counted alive")
        seen = samples(a)
        self.assertEqual(seen["hbchat_cluster_redis_up"], 1)
        self.assertEqual(seen["hbchat_cluster_lag_events"], 0)
        self.assertGreaterEqual(seen["hbchat_cluster_append_latency_seconds_count"], 2)
        self.assertGreaterEqual(seen["hbchat_cluster_redis_round_trip_seconds_count"], 1)
        self.assertGreaterEqual(seen["hbchat_cluster_batches_total"], 2)

    @inlineCallbacks
    def test_promtool_accepts_the_cluster_metrics(self) -> Any:
        promtool = findPromtool()
        _, (a, _), _ = yield self.twoNodes()
        text = generate_latest(chat_registry(a)).decode("utf-8")
        result = subprocess.run(
            [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60, check=False
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    @inlineCallbacks
    def test_not_ready_while_redis_is_gone(self) -> Any:
        """/readyz: ready while joined; 503 (a reason) while Redis is unreachable; redis_up 0."""
        redis, (a, port_a), _ = yield self.twoNodes()
        # Its listener as the service would list it (startNode listens without one).
        a.listeners.append(SimpleNamespace(description=f"tcp:{port_a}", accepted=0, listening=True))
        self.assertIsNone(readiness(a))
        yield redis.stop()
        chat = cast(ClusterChat, a.chat)
        yield until(lambda: not chat.available, "node a noticing")
        self.assertIn("cluster unavailable", readiness(a) or "")
        self.assertEqual(samples(a)["hbchat_cluster_redis_up"], 0)

    @inlineCallbacks
    def test_connections_name_the_node(self) -> Any:
        _, (a, port_a), _ = yield self.twoNodes()
        yield self.join(port_a, "ann")
        entries = [describe_connection(protocol, 0.0) for protocol in a.connections]
        self.assertEqual([entry["node"] for entry in entries], ["a"])
