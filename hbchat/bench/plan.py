"""Each worker's share of the connections (pure): what the parent hands every worker process."""

from __future__ import annotations

from dataclasses import dataclass

from hbchat.bench.settings import RunSettings
from hbchat.bench.stats import offsets, split


@dataclass
class WorkerPlan:
    """This worker's share: how many connections of each role, and their global numbers."""

    index: int
    clients: int = 0
    first_client: int = 0
    receivers: int = 0
    first_receiver: int = 0
    senders: int = 0
    first_sender: int = 0
    #: The global start of every ping schedule (wall-clock ns), shared by all workers.
    base_ns: int = 0

    @property
    def connections(self) -> int:
        return self.clients + self.receivers + self.senders


def plans(settings: RunSettings, workers: int, base_ns: int) -> list[WorkerPlan]:
    """Each worker's share of the connections (receivers and senders spread alike)."""
    clients = split(settings.clients, workers)
    receivers = split(settings.receivers, workers)
    # Senders go to the workers with the fewest receivers first.
    senders = split(settings.senders, workers)[::-1]
    return [
        WorkerPlan(
            index=w,
            clients=clients[w],
            first_client=offsets(clients)[w],
            receivers=receivers[w],
            first_receiver=offsets(receivers)[w],
            senders=senders[w],
            first_sender=offsets(senders)[w],
            base_ns=base_ns,
        )
        for w in range(workers)
    ]
