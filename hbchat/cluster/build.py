"""
``twistd hbchat --redis``: the service of a cluster node, built once Redis has been checked
(:mod:`hbchat.cluster.probe`): the chat in Redis (:class:`~hbchat.cluster.chat.ClusterChat`)
behind the usual listeners, drain and ``--metrics``.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.application.service import IService

from hbchat.cluster.chat import ClusterChat
from hbchat.cluster.keys import Keys
from hbchat.cluster.options import START_WAIT, ClusterSettings
from hbchat.cluster.probe import ProbeError, probe
from hbchat.cluster.service import ClusterService
from hbchat.config import ServerConfig
from hbchat.ops.observed import ObservedChatFactory
from hbchat.ops.web import WithMetrics
from hbchat.server.service import ChatService
from hbchat.server.statekeeper import keep_state
from hbchat.server.tls import identity_refusal


def cluster_service(options: Any, cluster: ClusterSettings, reactor: Any) -> IService:
    """With --redis: Redis checked (one line on stderr and exit 1 if it will not do), the chat in Redis."""
    try:
        probe(cluster.url, Keys(cluster.cluster_name), START_WAIT)
    except ProbeError as error:
        sys.stderr.write(f"twistd hbchat: error: {error}\n")
        raise SystemExit(1) from None

    def chat_maker(config: ServerConfig, clock: Any, events: Any, turn_ended: Any) -> ClusterChat:
        return ClusterChat(
            config,
            clock,
            events,
            turn_ended,
            cluster.url,
            cluster.cluster_name,
            cluster.node_name,
            cluster.node_timeout,
        )

    config: ServerConfig = options.config
    factory = ObservedChatFactory(
        config, reactor, options.checker, identity_refusal=identity_refusal, chat_maker=chat_maker
    )
    if options["state"] is not None:
        keep_state(factory.chat, options["state"])  # a chat in Redis: one warning that it is ignored
    listeners = ChatService(
        factory,
        config.listen,
        reactor,
        tuple(options["web"]),
        tuple(options["web-origin"]),
        reuse_port=bool(options["reuse-port"]),
    )
    service: IService = ClusterService(factory.chat, listeners)  # type: ignore[arg-type]
    if options["metrics"] is not None:
        return WithMetrics(service, factory, options["metrics"], reactor)
    return service
