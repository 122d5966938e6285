"""
The chat service of a cluster node: the node joins the cluster before the listeners open,
and leaves it (its last batch sent, its lease given back) after the drain.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred, maybeDeferred

from hbchat.cluster.chat import ClusterChat


class ClusterService(MultiService):
    """``service`` (the chat's listeners and drain), with its chat's membership of the cluster around it."""

    def __init__(self, chat: ClusterChat, service: IService) -> None:
        super().__init__()
        self.chat = chat
        self.service = service
        self.factory = getattr(service, "factory", None)
        service.setServiceParent(self)

    def startService(self) -> None:
        self.chat.start()
        super().startService()

    def stopService(self) -> Deferred[None]:
        stopped: Deferred[Any] = maybeDeferred(super().stopService)
        stopped.addBoth(lambda _: self.chat.stop())
        stopped.addBoth(lambda _: None)
        return stopped
