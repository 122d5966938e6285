"""
The command line of cluster mode, for ``twistd hbchat`` (:mod:`hbchat.server.tap`):
``--redis``, ``--cluster-name``, ``--node-name``, ``--node-timeout``.

Nothing here touches the network or imports txredisapi (which installs a reactor when
imported): the tap imports the rest of :mod:`hbchat.cluster` only with ``--redis``.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

from hbchat.cluster.keys import check_cluster_name, check_node_name
from hbchat.cluster.url import RedisURL, parse_redis_url
from hbchat.config import ConfigError, parse_seconds

DEFAULT_CLUSTER_NAME = "hbchat"
DEFAULT_NODE_TIMEOUT = 5.0
#: Seconds ``twistd hbchat --redis`` waits at start for Redis to answer before it gives up.
START_WAIT = 10.0

#: ``optParameters`` rows for usage.Options.
PARAMETERS: list[list[Any]] = [
    [
        "redis",
        None,
        None,
        "Become one node of the cluster that every node with this Redis URL and --cluster-name forms (one chat: "
        "one seq, shared history and sessions, resume on any node): redis://[[user]:password@]host[:port][/db], "
        "rediss://... (TLS, verified; ?ca=FILE or the system store) or unix:///path/redis.sock[?db=N]; the password "
        "may come from HBCHAT_REDIS_PASSWORD instead. Needs Redis 7 or later (docs/cluster.md) [default: off]",
    ],
    [
        "cluster-name",
        None,
        DEFAULT_CLUSTER_NAME,
        "With --redis: the cluster's name, the prefix of its keys, so several chats can share one Redis.",
    ],
    [
        "node-name",
        None,
        None,
        "With --redis: this node's name in logs, /connections and metrics [default: <hostname>-<pid>]",
    ],
    [
        "node-timeout",
        None,
        int(DEFAULT_NODE_TIMEOUT),
        "With --redis: seconds after which a node that stopped renewing its lease (renewed every second) is dead to "
        "the others, who announce its users' LEFT ... timeout.",
    ],
]


@dataclass(frozen=True)
class ClusterSettings:
    url: RedisURL
    cluster_name: str
    node_name: str
    node_timeout: float


def default_node_name() -> str:
    host = socket.gethostname().split(".", 1)[0] or "node"
    return f"{host}-{os.getpid()}"


def cluster_settings(options: Any) -> ClusterSettings | None:
    """The cluster settings of parsed options (None without --redis); :class:`ConfigError` if bad."""
    if options["redis"] is None:
        for name in ("node-name",):
            if options[name] is not None:
                raise ConfigError(f"--{name} needs --redis")
        return None
    node_timeout = parse_seconds("node-timeout", str(options["node-timeout"]))
    if node_timeout < 2:
        raise ConfigError(
            f"--node-timeout must be at least 2 seconds (leases are renewed every second), not {node_timeout:g}"
        )
    return ClusterSettings(
        url=parse_redis_url(options["redis"]),
        cluster_name=check_cluster_name(options["cluster-name"]),
        node_name=check_node_name(options["node-name"] or default_node_name()),
        node_timeout=node_timeout,
    )
