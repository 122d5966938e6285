"""
One chat across nodes: in-process cluster nodes (ClusterChat behind real loopback listeners)
against a real redis-server started by each test.
"""

from __future__ import annotations

import re
import signal
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.protocols.portforward import ProxyFactory
from txredisapi import UnixConnection

from hbchat.cluster import batch as batch_module
from hbchat.cluster.chat import ClusterChat
from tests.clusternodes import ClusterTestCase, until
from tests.redisserver import RedisServer
from tests.test_integration import DEADLINE, within
from tests.test_twistd import freePort


class ClusterChatTests(ClusterTestCase):
    @inlineCallbacks
    def twoNodes(self, **settings: Any) -> Any:
        redis = RedisServer(self)
        yield redis.start()
        a, port_a = yield self.startNode(redis.url, "a", **settings)
        b, port_b = yield self.startNode(redis.url, "b", **settings)
        return redis, (a, port_a), (b, port_b)

    @inlineCallbacks
    def test_chat_across_nodes(self) -> Any:
        """A MSG said on one node reaches a user on the other, with the same seq on both."""
        _, (_, port_a), (_, port_b) = yield self.twoNodes()
        ann, _, _ = yield self.join(port_a, "ann")
        bob, _, _ = yield self.join(port_b, "bob")
        ann.sendLine("SAY hello bob")
        on_b = yield bob.waitForLine(r"MSG (\d+) ann hello bob")
        on_a = yield ann.waitForLine(r"MSG (\d+) ann hello bob")
        self.assertEqual(on_a.group(1), on_b.group(1))

    @inlineCallbacks
    def test_join_seen_across_nodes(self) -> Any:
        """The JOIN of a user on one node reaches the users of the other, and WELCOME's seq is the cluster's."""
        _, (_, port_a), (_, port_b) = yield self.twoNodes()
        ann, _, seq = yield self.join(port_a, "ann")
        _, _, bob_seq = yield self.join(port_b, "bob")
        yield ann.waitForLine(rf"JOIN {bob_seq + 1} bob")
        self.assertEqual(bob_seq, seq + 1)

    @inlineCallbacks
    def test_who_lists_every_node(self) -> Any:
        """WHO on either node lists the users of both, sorted."""
        _, (_, port_a), (_, port_b) = yield self.twoNodes()
        ann, _, _ = yield self.join(port_a, "ann")
        bob, _, _ = yield self.join(port_b, "bob")
        yield self.join(port_a, "Carl")
        yield bob.waitForLine(r"JOIN \d+ Carl")
        bob.sendLine("WHO")
        yield bob.waitForLine("USERS ann bob Carl")
        yield ann.waitForLine(r"JOIN \d+ Carl")
        ann.sendLine("WHO")
        yield ann.waitForLine("USERS ann bob Carl")

    @inlineCallbacks
    def test_nick_unique_across_nodes(self) -> Any:
        """A nick held on one node is ERR 433 on the other, regardless of letter case."""
        _, (_, port_a), (_, port_b) = yield self.twoNodes()
        yield self.join(port_a, "ann")
        other = yield self.connect(port_b, "other")
        yield other.waitForLine("HELLO .*")
        other.sendLine("NICK ANN")
        yield other.waitForLine("ERR 433 nick in use")

    @inlineCallbacks
    def test_nick_in_grace_reserved_across_nodes(self) -> Any:
        """A nick whose session is in grace (its connection dropped on one node) is ERR 433 on the other."""
        _, (_, port_a), (_, port_b) = yield self.twoNodes()
        ann, _, _ = yield self.join(port_a, "ann")
        watcher, _, _ = yield self.join(port_b, "watcher")
        yield ann.disconnect()
        yield watcher.waitForLine(r"LEFT \d+ ann error")
        other = yield self.connect(port_b, "other")
        yield other.waitForLine("HELLO .*")
        other.sendLine("NICK ann")
        yield other.waitForLine("ERR 433 nick in use")
        watcher.sendLine("WHO")
        yield watcher.waitForLine("USERS watcher")

    @inlineCallbacks
    def test_tell_reaches_another_node(self) -> Any:
        _, (_, port_a), (_, port_b) = yield self.twoNodes()
        ann, _, _ = yield self.join(port_a, "ann")
        bob, _, _ = yield self.join(port_b, "bob")
        yield ann.waitForLine(r"JOIN \d+ bob")
        ann.sendLine("TELL bob psst")
        yield bob.waitForLine("PRIV ann psst")

    @inlineCallbacks
    def test_tell_unknown_nick(self) -> Any:
        _, (_, port_a), _ = yield self.twoNodes()
        ann, _, _ = yield self.join(port_a, "ann")
        ann.sendLine("TELL nobody psst")
        yield ann.waitForLine("ERR 406 no such nick")

    @inlineCallbacks
    def test_same_order_on_every_node(self) -> Any:
        """Three nodes, two senders on each, all at once: every client gets the same events, no gap, no duplicate."""
        redis = RedisServer(self)
        yield redis.start()
        ports = []
        for name in ("a", "b", "c"):
            _, port = yield self.startNode(redis.url, name)
            ports.append(port)
        clients = []
        for index in range(6):
            client, _, _ = yield self.join(ports[index % 3], f"u{index}")
            clients.append(client)
        for client in clients:
            yield client.waitForLine(r"JOIN \d+ u5")
        count = 50
        for client in clients:
            client.sendLines([f"SAY {client.name} {n}" for n in range(count)])
        for client in clients:
            yield client.waitForLines(r"MSG \d+ u\d \S+ \d+", count * 6)
        streams = []
        for client in clients:
            events = [line for line in client.lines if re.match(r"(MSG|JOIN|LEFT) \d+ ", line)]
            start = next(i for i, line in enumerate(events) if line.startswith("MSG "))
            streams.append(events[start:])
            seqs = [int(line.split()[1]) for line in events]
            self.assertEqual(seqs, list(range(seqs[0], seqs[0] + len(seqs))), f"{client.name}: a gap or a duplicate")
        for stream in streams[1:]:
            self.assertEqual(stream, streams[0])

    @inlineCallbacks
    def test_resume_on_another_node(self) -> Any:
        """A session whose connection dropped on one node resumes on the other: what it missed, complete."""
        _, (_, port_a), (_, port_b) = yield self.twoNodes()
        ann, token, _ = yield self.join(port_a, "ann")
        bob, _, _ = yield self.join(port_b, "bob")
        yield ann.waitForLine(r"JOIN \d+ bob")
        last = int(ann.lines[-1].split()[1])
        yield ann.disconnect()
        yield bob.waitForLine(r"LEFT \d+ ann error")
        bob.sendLines(["SAY one", "SAY two"])
        yield bob.waitForLine(r"MSG \d+ bob two")
        again = yield self.connect(port_b, "ann-again")
        yield again.waitForLine("HELLO .*")
        again.sendLine(f"RESUME {token} {last}")
        yield again.waitForLine(r"RESUMED 3 complete")
        self.assertEqual(
            [re.sub(r" \d+ ", " N ", line) for line in again.lines[2:5]],
            ["LEFT N ann error", "MSG N bob one", "MSG N bob two"],
        )
        yield bob.waitForLine(r"JOIN \d+ ann")

    @inlineCallbacks
    def test_resume_takes_over_a_connection_on_another_node(self) -> Any:
        """RESUME of a session still attached elsewhere: BYE replaced there, and nobody is told LEFT or JOIN."""
        _, (_, port_a), (_, port_b) = yield self.twoNodes()
        ann, token, seq = yield self.join(port_a, "ann")
        bob, _, _ = yield self.join(port_b, "bob")
        again = yield self.connect(port_b, "ann-again")
        yield again.waitForLine("HELLO .*")
        again.sendLine(f"RESUME {token} {seq + 2}")
        yield again.waitForLine(r"RESUMED 0 complete")
        yield ann.waitForLine("BYE replaced")
        bob.sendLine("SAY after")
        yield bob.waitForLine(r"MSG \d+ bob after")
        self.assertEqual([line for line in bob.lines if re.match(r"(LEFT|JOIN) \d+ ann", line)], [])

    @inlineCallbacks
    def test_unknown_session(self) -> Any:
        _, (_, port_a), _ = yield self.twoNodes()
        client = yield self.connect(port_a, "x")
        yield client.waitForLine("HELLO .*")
        client.sendLine("RESUME nosuchtoken 0")
        yield client.waitForLine("ERR 404 unknown session")

    @inlineCallbacks
    def test_resume_ahead_of_the_chat_is_unknown(self) -> Any:
        """A RESUME whose last seq is ahead of the cluster's is ERR 404 (it belongs to a chat that was lost)."""
        _, (_, port_a), (_, port_b) = yield self.twoNodes()
        ann, token, seq = yield self.join(port_a, "ann")
        yield ann.disconnect()
        again = yield self.connect(port_b, "again")
        yield again.waitForLine("HELLO .*")
        again.sendLine(f"RESUME {token} {seq + 1000}")
        yield again.waitForLine("ERR 404 unknown session")

    @inlineCallbacks
    def test_one_round_trip_per_turn(self) -> Any:
        """Twenty SAYs read in one reactor turn go to Redis in one batch (one round trip), in order."""
        _, (a, port_a), _ = yield self.twoNodes()
        chat = cast(ClusterChat, a.chat)
        ann, _, _ = yield self.join(port_a, "ann")
        batches = chat.node.batch.sent
        ann.sendLines([f"SAY line {n}" for n in range(20)])
        lines = yield ann.waitForLines(r"MSG \d+ ann line (\d+)", 20)
        self.assertEqual([int(match.group(1)) for match in lines], list(range(20)))
        self.assertEqual(chat.node.batch.sent - batches, 1)

    @inlineCallbacks
    def test_resume_beyond_the_history_is_partial(self) -> Any:
        """More missed than --history holds: the events still held, then RESUMED n partial."""
        _, (_, port_a), (_, port_b) = yield self.twoNodes(history=3)
        ann, token, _ = yield self.join(port_a, "ann")
        bob, _, _ = yield self.join(port_b, "bob")
        yield ann.waitForLine(r"JOIN \d+ bob")
        last = int(ann.lines[-1].split()[1])
        yield ann.disconnect()
        bob.sendLines([f"SAY {n}" for n in range(5)])
        yield bob.waitForLine(r"MSG \d+ bob 4")
        again = yield self.connect(port_b, "again")
        yield again.waitForLine("HELLO .*")
        again.sendLine(f"RESUME {token} {last}")
        yield again.waitForLine("RESUMED 3 partial")

    @inlineCallbacks
    def test_takeover_on_the_same_node(self) -> Any:
        _, (_, port_a), _ = yield self.twoNodes()
        ann, token, seq = yield self.join(port_a, "ann")
        again = yield self.connect(port_a, "again")
        yield again.waitForLine("HELLO .*")
        again.sendLine(f"RESUME {token} {seq + 1}")
        yield again.waitForLine("RESUMED 0 complete")
        yield ann.waitForLine("BYE replaced")
        again.sendLine("SAY still me")
        yield again.waitForLine(r"MSG \d+ ann still me")

    @inlineCallbacks
    def test_grace_runs_out(self) -> Any:
        """After --grace the session is gone everywhere (ERR 404) and its nick is free."""
        _, (_, port_a), (_, port_b) = yield self.twoNodes(grace=0.5)
        ann, token, _ = yield self.join(port_a, "ann")
        yield ann.disconnect()
        yield deferLater(reactor, 1.0, lambda: None)
        again = yield self.connect(port_b, "again")
        yield again.waitForLine("HELLO .*")
        again.sendLine(f"RESUME {token} 0")
        yield again.waitForLine("ERR 404 unknown session")
        again.sendLine("NICK ann")
        yield again.waitForLine(r"WELCOME ann .*")

    @inlineCallbacks
    def test_counter_behind_is_moved_ahead(self) -> Any:
        """Redis's seq set back (it lost data): the next event still comes after the last one delivered."""
        redis, (_, port_a), _ = yield self.twoNodes()
        ann, _, _ = yield self.join(port_a, "ann")
        ann.sendLine("SAY before")
        before = yield ann.waitForLine(r"MSG (\d+) ann before")
        connection = yield within(UnixConnection(redis.socket, reconnect=False), DEADLINE, "connecting")
        self.addCleanup(connection.disconnect)
        yield connection.execute_command("HSET", "{test}:meta", "seq", "0")
        ann.sendLine("SAY after")
        after = yield ann.waitForLine(r"MSG (\d+) ann after")
        self.assertEqual(int(after.group(1)), int(before.group(1)) + 1)

    @inlineCallbacks
    def test_burst_beyond_the_history_all_delivered(self) -> Any:
        """A burst of more events than --history in one turn: every node still delivers every one."""
        _, (_, port_a), (_, port_b) = yield self.twoNodes(history=100, rate=0)
        ann, _, _ = yield self.join(port_a, "ann")
        bob, _, _ = yield self.join(port_b, "bob")
        yield ann.waitForLine(r"JOIN \d+ bob")
        ann.sendLines([f"SAY {n}" for n in range(1000)])
        on_b = yield bob.waitForLines(r"MSG \d+ ann (\d+)", 1000)
        self.assertEqual([int(match.group(1)) for match in on_b], list(range(1000)))
        yield ann.waitForLines(r"MSG \d+ ann \d+", 1000)

    @inlineCallbacks
    def test_redis_behind_refuses_with_429(self) -> Any:
        """More lines than may be out to Redis at once: the rest are ERR 429 (sent again by a client), none lost."""
        self.patch(batch_module, "MAX_IN_FLIGHT", 10)
        _, (_, port_a), _ = yield self.twoNodes(rate=0)
        ann, _, _ = yield self.join(port_a, "ann")
        ann.sendLines([f"SAY {n}" for n in range(50)])
        refused = yield ann.waitForLines("ERR 429 too many requests: SAY not handled", 40)
        said = yield ann.waitForLines(r"MSG \d+ ann (\d+)", 10)
        self.assertEqual((len(refused), [int(match.group(1)) for match in said]), (40, list(range(10))))

    @inlineCallbacks
    def test_events_gone_before_read_close_the_connections(self) -> Any:
        """A jump in the log (events gone before this node read them): its users are closed and resume partial."""
        redis, (_, port_a), _ = yield self.twoNodes()
        ann, token, seq = yield self.join(port_a, "ann")
        connection = yield within(UnixConnection(redis.socket, reconnect=False), DEADLINE, "connecting")
        self.addCleanup(connection.disconnect)
        jump = seq + 10
        yield connection.execute_command("HSET", "{test}:meta", "seq", str(jump))
        yield connection.execute_command("XADD", "{test}:log", f"{jump}-0", "k", "M", "n", "ghost", "t", "boo")
        yield ann.waitForLine(r"BYE shutdown.*")
        again = yield self.connect(port_a, "again")
        yield again.waitForLine("HELLO .*")
        again.sendLine(f"RESUME {token} {seq + 1}")
        yield again.waitForLine(r"RESUMED \d+ partial")

    @inlineCallbacks
    def test_quit_frees_the_nick_everywhere(self) -> Any:
        _, (_, port_a), (_, port_b) = yield self.twoNodes()
        ann, _, _ = yield self.join(port_a, "ann")
        ann.sendLine("QUIT")
        yield ann.waitForLine("BYE quit")
        again, _, _ = yield self.join(port_b, "ann")
        self.assertIsNotNone(again)


class RedisUnavailableTests(ClusterTestCase):
    @inlineCallbacks
    def test_verbs_answered_503_and_connection_kept(self) -> Any:
        """Redis gone: NICK, SAY, TELL get ERR 503 cluster unavailable; PING still answered; the connection stays."""
        redis = RedisServer(self)
        yield redis.start()
        factory, port = yield self.startNode(redis.url, "a")
        ann, _, _ = yield self.join(port, "ann")
        newcomer = yield self.connect(port, "new")
        yield newcomer.waitForLine("HELLO .*")
        yield redis.stop()
        chat = cast(ClusterChat, factory.chat)
        yield until(lambda: not chat.available, "the node noticing Redis is gone")
        start = ann.mark()
        ann.sendLines(["SAY hello", "TELL ann hi", "PING x"])
        yield ann.waitForLine("ERR 503 cluster unavailable: SAY not handled", start)
        yield ann.waitForLine("ERR 503 cluster unavailable: TELL not handled", start)
        yield ann.waitForLine("PONG x", start)
        newcomer.sendLines(["NICK newcomer", "RESUME sometoken 0"])
        yield newcomer.waitForLine("ERR 503 cluster unavailable: NICK not handled")
        yield newcomer.waitForLine("ERR 503 cluster unavailable: RESUME not handled")
        self.assertIsNone(ann.lostReason)

    @inlineCallbacks
    def test_back_where_it_was(self) -> Any:
        """Redis stopped and started again (with its data): the log goes on from where it was, nothing echoed lost."""
        redis = RedisServer(self, persist=True)
        yield redis.start()
        factory, port = yield self.startNode(redis.url, "a")
        chat = cast(ClusterChat, factory.chat)
        ann, _, _ = yield self.join(port, "ann")
        ann.sendLine("SAY before")
        before = yield ann.waitForLine(r"MSG (\d+) ann before")
        yield redis.stop()
        yield until(lambda: not chat.available, "the node noticing Redis is gone")
        yield redis.start()
        yield until(lambda: chat.available, "the node back in the cluster")
        ann.sendLine("SAY after")
        after = yield ann.waitForLine(r"MSG (\d+) ann after")
        self.assertEqual(int(after.group(1)), int(before.group(1)) + 1)
        self.assertIsNone(ann.lostReason)

    @inlineCallbacks
    def test_redis_hung(self) -> Any:
        """Redis frozen (SIGSTOP) past --node-timeout: the nodes stop serving, then go on; nobody is declared dead."""
        redis = RedisServer(self)
        yield redis.start()
        a, port_a = yield self.startNode(redis.url, "a")
        b, port_b = yield self.startNode(redis.url, "b")
        ann, _, _ = yield self.join(port_a, "ann")
        bob, _, _ = yield self.join(port_b, "bob")
        yield ann.waitForLine(r"JOIN \d+ bob")
        redis.signal(signal.SIGSTOP)
        self.addCleanup(redis.signal, signal.SIGCONT)
        chats = [cast(ClusterChat, a.chat), cast(ClusterChat, b.chat)]
        yield until(lambda: not any(chat.available for chat in chats), "both nodes noticing Redis hangs")
        yield deferLater(reactor, 1.0, lambda: None)
        redis.signal(signal.SIGCONT)
        yield until(lambda: all(chat.available for chat in chats), "both nodes serving again")
        ann.sendLine("SAY after the freeze")
        yield bob.waitForLine(r"MSG \d+ ann after the freeze")
        self.assertEqual([line for line in bob.lines if line.startswith("LEFT ")], [])
        self.assertEqual([chat.node.rejoins for chat in chats], [0, 0])

    @inlineCallbacks
    def test_flushed_redis_seqs_keep_rising(self) -> Any:
        """Redis lost its data: the node closes its connections, their sessions are unknown, seqs go on above."""
        redis = RedisServer(self)
        yield redis.start()
        factory, port = yield self.startNode(redis.url, "a")
        chat = cast(ClusterChat, factory.chat)
        ann, token, _ = yield self.join(port, "ann")
        ann.sendLine("SAY before")
        before = yield ann.waitForLine(r"MSG (\d+) ann before")
        yield redis.stop()
        yield redis.start()
        yield ann.waitForLine(r"BYE shutdown.*")
        yield until(lambda: chat.available, "the node back in the cluster")
        self.assertEqual(chat.node.dataLosses, 1)
        again = yield self.connect(port, "again")
        yield again.waitForLine("HELLO .*")
        again.sendLine(f"RESUME {token} {before.group(1)}")
        yield again.waitForLine("ERR 404 unknown session")
        again.sendLine("NICK ann")
        welcome = yield again.waitForLine(r"WELCOME ann \S+ (\d+)")
        self.assertGreaterEqual(int(welcome.group(1)), int(before.group(1)))


class _CuttableProxy(ProxyFactory):
    """A TCP proxy to Redis whose connections the test can cut (a network partition)."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.servers: list[Any] = []

    def buildProtocol(self, addr: Any) -> Any:
        server = super().buildProtocol(addr)
        self.servers.append(server)
        return server

    def cut(self) -> None:
        for server in self.servers:
            for transport in (server.transport, server.peer and server.peer.transport):
                if transport is not None:
                    cast(Any, transport).abortConnection()
        self.servers = []


class PartitionTests(ClusterTestCase):
    @inlineCallbacks
    def test_node_cut_off_from_redis(self) -> Any:
        """
        A node cut off from Redis (Redis itself up) longer than --node-timeout: its user gets
        ERR 503, the others see LEFT timeout; back, it finds itself declared dead, closes its
        connections and rejoins; the user resumes elsewhere, complete.
        """
        redis_port = freePort()
        redis = RedisServer(self, tcp_port=redis_port)
        yield redis.start()
        proxy = _CuttableProxy("127.0.0.1", redis_port)
        listening = reactor.listenTCP(0, cast(Any, proxy), interface="127.0.0.1")
        proxy_port = cast(Any, listening.getHost()).port
        a, port_a = yield self.startNode(f"redis://127.0.0.1:{proxy_port}", "a")
        _, port_b = yield self.startNode(redis.url, "b")
        ann, token, _ = yield self.join(port_a, "ann")
        bob, _, _ = yield self.join(port_b, "bob")
        yield ann.waitForLine(r"JOIN \d+ bob")
        last = int(ann.lines[-1].split()[1])
        yield listening.stopListening()
        proxy.cut()
        chat_a = cast(ClusterChat, a.chat)
        yield until(lambda: not chat_a.available, "node a noticing it is cut off")
        start = ann.mark()
        ann.sendLine("SAY anyone?")
        yield ann.waitForLine("ERR 503 cluster unavailable: SAY not handled", start)
        yield bob.waitForLine(r"LEFT \d+ ann timeout")
        bob.sendLine("WHO")
        yield bob.waitForLine("USERS bob")
        bob.sendLine("SAY ann is gone")
        yield bob.waitForLine(r"MSG \d+ bob ann is gone")
        listening = reactor.listenTCP(proxy_port, cast(Any, proxy), interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        yield ann.waitForLine(r"BYE shutdown.*")
        yield until(lambda: chat_a.available, "node a rejoining")
        self.assertEqual(chat_a.node.rejoins, 1)
        again = yield self.connect(port_b, "again")
        yield again.waitForLine("HELLO .*")
        again.sendLine(f"RESUME {token} {last}")
        yield again.waitForLine("RESUMED 2 complete")


class GraceBoundTests(ClusterTestCase):
    @inlineCallbacks
    def test_max_grace_across_the_cluster(self) -> Any:
        """--max-grace holds across nodes: beyond it the oldest session in grace ends (404, its nick free)."""
        redis = RedisServer(self)
        yield redis.start()
        _, port_a = yield self.startNode(redis.url, "a", max_grace=2)
        _, port_b = yield self.startNode(redis.url, "b", max_grace=2)
        watcher, _, _ = yield self.join(port_b, "watcher")
        tokens = []
        for index, port in enumerate((port_a, port_b, port_a)):
            client, token, _ = yield self.join(port, f"u{index}")
            tokens.append(token)
            yield client.disconnect()
            yield watcher.waitForLine(rf"LEFT \d+ u{index} error")
        again = yield self.connect(port_b, "again")
        yield again.waitForLine("HELLO .*")
        again.sendLine(f"RESUME {tokens[0]} 0")
        yield again.waitForLine("ERR 404 unknown session")
        again.sendLine(f"RESUME {tokens[1]} 0")
        yield again.waitForLine(r"RESUMED \d+ partial|RESUMED \d+ complete")
        other = yield self.connect(port_a, "other")
        yield other.waitForLine("HELLO .*")
        other.sendLine("NICK u0")
        yield other.waitForLine(r"WELCOME u0 .*")
