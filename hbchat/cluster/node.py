"""
A node of the cluster: its links to Redis, its lease, the batch of each reactor turn, and
the log it follows.

- Two links (:mod:`hbchat.cluster.link`): one for commands (the function library is loaded
  on it at every connect), one for the blocking read of the log.
- Every second ``hb_tick`` renews the lease and declares dead the nodes whose lease ran out
  (:file:`library.lua`); its answer also tells the nodes alive and Redis's round trip.
- Everything the chat asks in one reactor turn goes in one ``hb_batch`` call: one round trip.
  Batches are pipelined (sent without waiting for the one before).
- The log is followed with ``XREAD BLOCK``: each reply (or empty reply after a second, which
  doubles as the liveness check) is handed to the owner in order.  Nothing read is handed on
  unless the lease was confirmed within ``--node-timeout``: a node that was frozen waits for
  its next tick, which tells it whether it was declared dead, before it delivers anything.

The membership lifecycle is :mod:`hbchat.cluster.membership`; the chat it serves is the
:class:`NodeOwner` (:class:`hbchat.cluster.chat.ClusterChat`).
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from importlib import resources
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from hbchat.cluster.backoff import CAP, full_jitter
from hbchat.cluster.batch import Batch, ClusterUnavailableError
from hbchat.cluster.keys import Keys, parse_id
from hbchat.cluster.link import Link, open_link
from hbchat.cluster.membership import LifeCore, Phase, Reaction, node_life
from hbchat.cluster.owner import NodeOwner
from hbchat.cluster.url import RedisURL
from hbchat.lognames import NamedLogger
from hbchat.ops.histogram import Histogram

#: The function library, loaded at every connect (FUNCTION LOAD REPLACE).
LIBRARY = resources.files("hbchat.cluster").joinpath("library.lua").read_bytes()
#: How long the blocking read waits for new entries before an empty reply (ms).
READ_BLOCK_MS = 1000
#: Log entries taken per read (a node that reads 1,000 per round trip tops out near 10,000 events/s).
READ_COUNT = 10000
#: Seconds between two lease renewals.
TICK = 1.0
#: Seconds a connection attempt, and any reply, may take before Redis counts as unreachable.
CONNECT_TIMEOUT = 3.0
REPLY_TIMEOUT = 3.0
#: The batches' link may queue many large calls behind one another under a flood: its
#: replies may take longer.  Redis's liveness is judged on the lease's and the reader's links.
BATCH_REPLY_TIMEOUT = 30.0
#: Buckets of the round-trip and append-latency histograms, in seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


class ClusterNode:
    """One node's membership of the cluster, and its traffic with Redis."""

    log = NamedLogger("hbchat.cluster.node")

    def __init__(
        self,
        url: RedisURL,
        keys: Keys,
        name: str,
        node_timeout: float,
        history: int,
        clock: IReactorTime,
        owner: NodeOwner,
        rng: random.Random | None = None,
        max_grace: int = 10000,
    ) -> None:
        self.url = url
        self.keys = keys
        self.name = name
        self.nodeTimeout = node_timeout
        self.history = history
        #: --max-grace: sessions in grace across the cluster.
        self.maxGrace = max_grace
        self.clock = clock
        self.owner = owner
        self.rng = rng or random.Random()
        self.core = LifeCore()
        self.life = node_life(self.core)
        #: This incarnation's ID in Redis (a new one at each fresh join).
        self.incarnation = b""
        #: The key set's epoch: a new one means Redis lost its data.
        self.epoch: bytes | None = None
        self.lastId = b"0-0"
        #: Three links: the batches (and the library's loading), the blocking read of the
        #: log, and the lease (its renewals never wait behind a flood of batches).
        self._cmd: Link | None = None
        self._reader: Link | None = None
        self._lease: Link | None = None
        #: Bumped at every connect and loss: callbacks of an older generation are ignored.
        self._generation = 0
        self._attempt = 0
        self._retry: IDelayedCall | None = None
        self.batch = Batch(clock, self._sendBatch, self._batchDead, self._appended)
        self._ticker: LoopingCall | None = None
        self._tickOut = False
        self._leaseConfirmedAt: float | None = None
        # What operations see (hbchat.ops.metrics).
        self.nodesAlive = 0
        self.roundTrip: float | None = None
        self.appendLatency: float | None = None
        self.appendLatencies = Histogram(LATENCY_BUCKETS)
        self.roundTrips = Histogram(LATENCY_BUCKETS)
        self.logSeq = 0
        self.reconnects = 0
        self.rejoins = 0
        self.dataLosses = 0
        self.announcedTimeouts = 0

    # --- state ---

    @property
    def up(self) -> bool:
        return self.core.phase is Phase.UP

    @property
    def phase(self) -> Phase:
        return self.core.phase

    def leaseValid(self) -> bool:
        """Our lease was confirmed less than --node-timeout ago (by our own clock)."""
        confirmed = self._leaseConfirmedAt
        return confirmed is not None and self.clock.seconds() - confirmed < self.nodeTimeout

    # --- starting and stopping ---

    def start(self) -> None:
        self._connect()

    @inlineCallbacks
    def stop(self) -> Any:
        """Leave the cluster: the last batch out, the lease given back, the links closed."""
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()
        cmd, inc = self._cmd, self.incarnation
        self.batch.flush()
        was_up = self.up
        self.life.stop()
        self._generation += 1
        if cmd is not None and was_up and cmd.connected:
            try:
                yield cmd.call(b"FCALL", b"hb_part", 1, self.keys.meta, inc)
            except Exception as error:
                self.log.warn("could not give back the lease: {error}", error=error)
        for link in (self._cmd, self._reader, self._lease):
            if link is not None and link.connected:
                link.abort()
        self._cmd = self._reader = self._lease = None

    # --- connecting ---

    @inlineCallbacks
    def _connect(self) -> Any:
        self._retry = None
        self._generation += 1
        generation = self._generation
        opened: list[Link] = []
        try:
            for timeout in (BATCH_REPLY_TIMEOUT, REPLY_TIMEOUT, REPLY_TIMEOUT):
                link = yield open_link(self.url, CONNECT_TIMEOUT, timeout)
                opened.append(link)
            # On the lease's link: its replies may not take long.
            yield opened[2].call(b"FUNCTION", b"LOAD", b"REPLACE", LIBRARY)
        except Exception as error:
            if generation == self._generation:
                self._unreachable(f"{self.url.describe()}: {error}")
            for link in opened:
                link.abort()
            return
        if generation != self._generation or self.core.phase is Phase.STOPPED:
            for link in opened:
                link.abort()
            return
        self._cmd, self._reader, self._lease = opened
        for link in opened:
            link.whenLost().addCallback(lambda _: self._linkLost(generation, "the connection to Redis ended"))
        if self._attempt:
            self.log.info("Redis is reachable again after {attempts} attempts", attempts=self._attempt)
        self._attempt = 0
        if self.core.phase is Phase.CUT_OFF:
            self._sendTick()
        else:
            self._join()

    def _unreachable(self, why: str) -> None:
        if self.core.phase is Phase.STOPPED:
            return
        delay = full_jitter(self._attempt, self.rng)
        if self._attempt == 0 or self._attempt % 20 == 0:
            self.log.warn("Redis unreachable ({why}); trying again in {delay:.2f}s", why=why, delay=delay)
        self._attempt += 1
        self.reconnects += 1
        self._retry = self.clock.callLater(delay, self._connect)

    def _linkLost(self, generation: int, why: str) -> None:
        if generation != self._generation:
            return
        self._generation += 1
        for link in (self._cmd, self._reader, self._lease):
            if link is not None:
                link.abort()
        self._cmd = self._reader = self._lease = None
        self._stopTicking()
        self.batch.fail_all()
        was_up = self.up
        if self.life.lost() is Reaction.RECONNECT:
            if was_up:
                self.log.warn("{why}: not serving the chat until Redis is back", why=why)
                self.owner.availability(False)
            self._unreachable(why)

    # --- joining and the lease ---

    def _new_incarnation(self) -> bytes:
        return f"{self.name}/{os.urandom(4).hex()}".encode()

    def _join(self) -> None:
        cmd, generation = self._lease, self._generation
        if cmd is None:
            return
        self.incarnation = self._new_incarnation()
        sent = self.clock.seconds()
        arguments = (self.incarnation, int(self.nodeTimeout * 1000), os.urandom(8).hex(), self.owner.floor())
        joining = cmd.call(b"FCALL", b"hb_join", 1, self.keys.meta, *arguments)
        joining.addCallbacks(
            self._joined, self._commandFailed, callbackArgs=(generation, sent), errbackArgs=(generation, "hb_join")
        )

    def _joined(self, reply: Any, generation: int, sent: float) -> None:
        if generation != self._generation:
            return
        epoch, seq, last_id, present = reply
        if self.epoch is not None and epoch != self.epoch:
            self.dataLosses += 1
            self.log.warn(
                "Redis lost the cluster's data (epoch {old} is now {new}): seqs go on from {seq}",
                old=self.epoch.decode(),
                new=epoch.decode(),
                seq=int(seq),
            )
        self.epoch = epoch
        self.lastId = last_id
        self.logSeq = int(seq)
        self._leaseConfirmedAt = sent
        self.roundTrip = self.clock.seconds() - sent
        self.owner.joined(int(seq), list(present))
        if self.life.joined() is Reaction.SERVE:
            self.log.info(
                "joined the cluster {name} as {incarnation} at seq {seq}",
                name=self.keys.name,
                incarnation=self.incarnation.decode(),
                seq=int(seq),
            )
            self._serve(generation)

    def _serve(self, generation: int) -> None:
        self.owner.availability(True)
        self._ticker = LoopingCall(self._sendTick)
        self._ticker.clock = self.clock
        self._ticker.start(TICK, now=False)
        self._read(generation)

    def _stopTicking(self) -> None:
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()
        self._ticker = None
        self._tickOut = False

    def _sendTick(self) -> None:
        cmd, generation = self._lease, self._generation
        if cmd is None or self._tickOut:
            return
        self._tickOut = True
        sent = self.clock.seconds()
        arguments = (
            self.incarnation,
            int(self.nodeTimeout * 1000),
            os.urandom(8).hex(),
            self.owner.floor(),
            self.history,
            int((CAP + TICK) * 1000),
            self.maxGrace,
        )
        ticking = cmd.call(b"FCALL", b"hb_tick", 1, self.keys.meta, *arguments)
        ticking.addCallbacks(
            self._ticked, self._commandFailed, callbackArgs=(generation, sent), errbackArgs=(generation, "hb_tick")
        )

    def _ticked(self, reply: Any, generation: int, sent: float) -> None:
        if generation != self._generation:
            return
        self._tickOut = False
        if reply[0] == b"dead":
            self._declaredDead()
            return
        _, epoch, seq, alive, announced = reply
        if epoch != self.epoch:
            # Our lease survived but the key set is new: treat it as the loss it is.
            self._declaredDead()
            return
        self._leaseConfirmedAt = sent
        self.roundTrip = self.clock.seconds() - sent
        self.roundTrips.observe(self.roundTrip)
        self.nodesAlive = int(alive)
        self.logSeq = max(self.logSeq, int(seq))
        if int(announced):
            self.announcedTimeouts += int(announced)
            self.log.info("announced LEFT timeout for {count} users of dead nodes", count=int(announced))
        if self.core.phase is Phase.CUT_OFF and self.life.joined() is Reaction.SERVE:
            self.log.info("back in the cluster as {incarnation}: the lease held", incarnation=self.incarnation.decode())
            self._serve(generation)

    def _declaredDead(self) -> None:
        self._stopTicking()
        self.batch.fail_all()
        if self.life.declared_dead() is not Reaction.REJOIN:
            return
        self.rejoins += 1
        self.log.warn(
            "this node ({incarnation}) was declared dead: closing its connections and joining afresh",
            incarnation=self.incarnation.decode(),
        )
        # The reader of the old incarnation stops: a new generation.
        self._generation += 1
        generation = self._generation
        for link in (self._cmd, self._reader, self._lease):
            if link is not None:
                link.whenLost().addCallback(lambda _: self._linkLost(generation, "the connection to Redis ended"))
        self.owner.availability(False)
        self.owner.declaredDead()
        self._join()

    def _commandFailed(self, failure: Failure, generation: int, what: str) -> None:
        if generation != self._generation:
            return
        self._tickOut = False
        self._linkLost(generation, f"{what} failed: {failure.getErrorMessage()}")

    # --- following the log ---

    def _read(self, generation: int) -> None:
        reader = self._reader
        if generation != self._generation or reader is None or not self.up:
            return
        reading = reader.call(
            b"XREAD", b"COUNT", READ_COUNT, b"BLOCK", READ_BLOCK_MS, b"STREAMS", self.keys.log, self.lastId
        )
        reading.addCallbacks(
            self._readReply, self._commandFailed, callbackArgs=(generation,), errbackArgs=(generation, "XREAD")
        )

    def _readReply(self, reply: Any, generation: int) -> None:
        if generation != self._generation:
            return
        if not self.leaseValid():
            # Frozen, or the ticks are stuck: the next tick tells whether we are still a
            # member; until then nothing is delivered (it is read again from lastId).
            self._sendTick()
            self.clock.callLater(0.1, self._read, generation)
            return
        if reply:
            for _stream, entries in reply:
                if entries:
                    self.lastId = entries[-1][0]
                    self.logSeq = max(self.logSeq, parse_id(self.lastId)[0])
                    self.owner.records(entries)
        self._read(generation)

    # --- the batch of a turn ---

    def submit(self, op: Sequence[bytes | int]) -> Deferred[Any]:
        """
        One operation of ``hb_batch`` (its letter and arguments), sent with everything else
        asked in this reactor turn; fires with its answer, or fails with
        :class:`ClusterUnavailableError` (not sent, or its outcome unknown).
        """
        if not self.up:
            failed: Deferred[Any] = Deferred()
            failed.errback(ClusterUnavailableError())
            return failed
        return self.batch.submit(op)

    def _sendBatch(self, ops: list[bytes | int]) -> Deferred[Any] | None:
        cmd = self._cmd
        if cmd is None or not self.up:
            return None
        head = (self.incarnation, os.urandom(8).hex(), self.owner.floor(), self.history, self.maxGrace)
        sending: Deferred[Any] = cmd.call(b"FCALL", b"hb_batch", 1, self.keys.meta, *head, *ops)
        return sending

    def _batchDead(self) -> None:
        if self.up:
            self._declaredDead()

    def _appended(self, seconds: float) -> None:
        self.appendLatency = seconds
        self.appendLatencies.observe(seconds)
