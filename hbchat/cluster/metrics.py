"""
What ``/metrics`` shows of a cluster node (``hbchat_cluster_*``), computed at scrape time
from its :class:`~hbchat.cluster.node.ClusterNode` and :class:`~hbchat.cluster.chat.ClusterChat`.
The chat hands this collector to the registry (:func:`hbchat.ops.metrics.chat_registry`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from hbchat.cluster.node import ClusterNode
from hbchat.ops.histogram import Histogram


class Observed(Protocol):
    """What the collector reads of the chat (:class:`hbchat.cluster.chat.ClusterChat`)."""

    node: ClusterNode
    seq: int
    gaps: int


def _histogram(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    buckets = [(floatToGoString(bound), float(count)) for bound, count in histogram.cumulative()]
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=histogram.sum, unit="seconds")


class ClusterCollector(Collector):
    def __init__(self, chat: Observed) -> None:
        self.chat = chat

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        chat, node = self.chat, self.chat.node
        info = GaugeMetricFamily(
            "hbchat_cluster_node",
            "1, labelled with this node's --node-name and --cluster-name.",
            labels=["node", "cluster"],
        )
        info.add_metric([node.name, node.keys.name], 1)
        yield info
        yield GaugeMetricFamily(
            "hbchat_cluster_redis_up", "1 while Redis is reachable and this node holds its lease (serving).", node.up
        )
        yield GaugeMetricFamily(
            "hbchat_cluster_nodes_alive", "Nodes holding a lease, as the last renewal saw them.", node.nodesAlive
        )
        yield GaugeMetricFamily(
            "hbchat_cluster_lag_events",
            "Events in the log that this node has not delivered yet.",
            max(0, node.logSeq - chat.seq),
        )
        yield _histogram(
            "hbchat_cluster_redis_round_trip_seconds", "Round trip of each lease renewal (hb_tick).", node.roundTrips
        )
        yield _histogram(
            "hbchat_cluster_append_latency_seconds",
            "From sending a turn's batch (hb_batch: appends, logins, departures) to its answer.",
            node.appendLatencies,
        )
        for name, documentation, value in (
            ("hbchat_cluster_batches", "Batches sent to Redis (one per reactor turn with work).", node.batch.sent),
            ("hbchat_cluster_batch_operations", "Operations in those batches.", node.batch.operations),
            ("hbchat_cluster_reconnects", "Attempts to reach Redis again after it was lost.", node.reconnects),
            ("hbchat_cluster_rejoins", "Times this node found itself declared dead and joined afresh.", node.rejoins),
            (
                "hbchat_cluster_gaps",
                "Times events were gone from the log before this node read them (its connections were closed).",
                chat.gaps,
            ),
            (
                "hbchat_cluster_data_losses",
                "Times this node found Redis had lost the cluster's data (a new epoch).",
                node.dataLosses,
            ),
            (
                "hbchat_cluster_timeouts_announced",
                "Users of dead nodes whose LEFT timeout this node announced.",
                node.announcedTimeouts,
            ),
        ):
            yield CounterMetricFamily(name, documentation, value=value)
