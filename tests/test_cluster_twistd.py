"""
Cluster nodes as real ``twistd -n hbchat --redis unix://...`` processes on loopback, against
a real redis-server: a node killed (-9), frozen (SIGSTOP), Redis stopped and flushed; and the
start-up refusals (one line on stderr, exit status 1).
"""

from __future__ import annotations

import os
import re
import signal
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.web.client import Agent, readBody
from txredisapi import UnixConnection

from tests.clusternodes import until
from tests.redisserver import RedisServer, require_redis
from tests.test_integration import DEADLINE, LineClient, log, within
from tests.test_twistd import TwistdProcess, TwistdTestCase, freePort

NODE_TIMEOUT = 2.0


class ClusterTwistdTestCase(TwistdTestCase):
    def setUp(self) -> None:
        super().setUp()
        require_redis()

    @inlineCallbacks
    def node(self, redis: RedisServer, name: str, *extra: str) -> Any:
        """A node process, once it has joined the cluster: (process, transport, port)."""
        port = freePort()
        process, transport = self.spawn(
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
            "--redis",
            redis.url,
            "--node-name",
            name,
            "--node-timeout",
            str(int(NODE_TIMEOUT)),
            *extra,
        )
        yield until(lambda: b"joined the cluster" in process.out or process.reason is not None, f"node {name} joining")
        if process.reason is not None:
            self.fail(f"node {name} ended\n{process.output()}")
        return process, transport, port

    @inlineCallbacks
    def client(self, port: int, name: str) -> Any:
        client = yield self._connect(TwistdProcess(), port)
        client.name = name
        yield client.waitForLine("HELLO .*")
        return client

    @inlineCallbacks
    def join(self, port: int, nick: str) -> Any:
        client = yield self.client(port, nick)
        client.sendLine(f"NICK {nick}")
        welcome = yield client.waitForLine(rf"WELCOME {nick} (\S+) (\d+)")
        return client, welcome.group(1)

    @staticmethod
    def lastSeq(client: LineClient) -> int:
        seqs = [int(m.group(1)) for line in client.lines if (m := re.match(r"(?:MSG|JOIN|LEFT) (\d+) ", line))]
        return seqs[-1] if seqs else 0

    @staticmethod
    def events(client: LineClient, pattern: str) -> list[str]:
        return [line for line in client.lines if re.fullmatch(pattern, line)]


class NodeDeathTests(ClusterTwistdTestCase):
    @staticmethod
    def _wake(transport: Any) -> None:
        if transport.pid is not None:
            transport.signalProcess(signal.SIGCONT)

    @inlineCallbacks
    def test_chat_across_processes(self) -> Any:
        redis = RedisServer(self)
        yield redis.start()
        _, _, port_a = yield self.node(redis, "a")
        _, _, port_b = yield self.node(redis, "b")
        ann, _ = yield self.join(port_a, "ann")
        bob, _ = yield self.join(port_b, "bob")
        ann.sendLine("SAY hi bob")
        yield bob.waitForLine(r"MSG \d+ ann hi bob")

    @inlineCallbacks
    def test_same_order_on_three_processes_while_all_send(self) -> Any:
        """Three node processes, two clients on each sending at once: one sequence for all, no gap, no duplicate."""
        redis = RedisServer(self)
        yield redis.start()
        ports = []
        for name in ("a", "b", "c"):
            _, _, port = yield self.node(redis, name)
            ports.append(port)
        clients = []
        for index in range(6):
            client, _ = yield self.join(ports[index % 3], f"u{index}")
            clients.append(client)
        for client in clients:
            yield client.waitForLine(r"JOIN \d+ u5")
        count = 100
        for client in clients:
            client.sendLines([f"SAY {client.name} {n}" for n in range(count)])
        for client in clients:
            yield client.waitForLines(r"MSG \d+ u\d \S+ \d+", count * 6)
        streams = []
        for client in clients:
            events = self.events(client, r"(MSG|JOIN|LEFT) \d+ .*")
            seqs = [int(line.split()[1]) for line in events]
            self.assertEqual(seqs, list(range(seqs[0], seqs[0] + len(seqs))), f"{client.name}: a gap or a duplicate")
            streams.append([line for line in events if line.startswith("MSG ")])
        for stream in streams[1:]:
            self.assertEqual(stream, streams[0])

    @inlineCallbacks
    def test_killed_node_announced_once_and_resumed_elsewhere(self) -> Any:
        """
        kill -9 of a node: within --node-timeout + 1 s the others announce LEFT timeout for its
        user, once across the cluster (same seq on both survivors); the session resumes on a
        survivor with nothing lost.
        """
        redis = RedisServer(self)
        yield redis.start()
        _, node_a, port_a = yield self.node(redis, "a")
        _, _, port_b = yield self.node(redis, "b")
        _, _, port_c = yield self.node(redis, "c")
        ann, token = yield self.join(port_a, "ann")
        bob, _ = yield self.join(port_b, "bob")
        carl, _ = yield self.join(port_c, "carl")
        yield ann.waitForLine(r"JOIN \d+ carl")
        last = self.lastSeq(ann)
        killed_at = reactor.seconds()
        node_a.signalProcess("KILL")
        on_b = yield bob.waitForLine(r"LEFT (\d+) ann timeout")
        elapsed = reactor.seconds() - killed_at
        on_c = yield carl.waitForLine(r"LEFT (\d+) ann timeout")
        self.assertEqual(on_b.group(1), on_c.group(1))
        log.info(
            "cluster: LEFT timeout {elapsed:.2f}s after kill -9 (--node-timeout {timeout})",
            elapsed=elapsed,
            timeout=NODE_TIMEOUT,
        )
        # Bound: --node-timeout + 1 s (the survivors' tick), plus 0.5 s for scheduling on a busy machine.
        self.assertLessEqual(elapsed, NODE_TIMEOUT + 1 + 0.5, f"LEFT timeout after {elapsed:.2f}s")
        bob.sendLine("SAY while ann was away")
        yield carl.waitForLine(r"MSG \d+ bob while ann was away")
        again = yield self.client(port_b, "ann-again")
        again.sendLine(f"RESUME {token} {last}")
        yield again.waitForLine(r"RESUMED 2 complete")
        self.assertEqual(
            [re.sub(r" \d+ ", " N ", line) for line in again.lines[2:4]],
            ["LEFT N ann timeout", "MSG N bob while ann was away"],
        )
        # Exactly once: nobody saw a second LEFT for ann.
        yield carl.waitForLine(r"JOIN \d+ ann")
        self.assertEqual(len(self.events(bob, r"LEFT \d+ ann timeout")), 1)
        self.assertEqual(len(self.events(carl, r"LEFT \d+ ann timeout")), 1)

    @inlineCallbacks
    def test_sigterm_node_resumed_on_another_complete(self) -> Any:
        """A node stopped with SIGTERM: BYE shutdown retry=S, LEFT error for the others, RESUMED complete elsewhere."""
        redis = RedisServer(self)
        yield redis.start()
        process_a, node_a, port_a = yield self.node(redis, "a", "--drain", "0")
        _, _, port_b = yield self.node(redis, "b")
        ann, token = yield self.join(port_a, "ann")
        bob, _ = yield self.join(port_b, "bob")
        yield ann.waitForLine(r"JOIN \d+ bob")
        last = self.lastSeq(ann)
        node_a.signalProcess("TERM")
        yield ann.waitForLine(r"BYE shutdown retry=\S+.*")
        yield bob.waitForLine(r"LEFT \d+ ann error")
        bob.sendLine("SAY during the restart")
        yield bob.waitForLine(r"MSG \d+ bob during the restart")
        yield within(process_a.whenEnded(), DEADLINE, "node a exiting")
        again = yield self.client(port_b, "ann-again")
        again.sendLine(f"RESUME {token} {last}")
        yield again.waitForLine(r"RESUMED 2 complete")

    @inlineCallbacks
    def test_single_node_restart_loses_nothing(self) -> Any:
        """One node with --redis, stopped (SIGTERM) and started again: the client resumes on it, complete."""
        redis = RedisServer(self)
        yield redis.start()
        process, node, port = yield self.node(redis, "a", "--drain", "0")
        ann, token = yield self.join(port, "ann")
        ann.sendLine("SAY before the restart")
        yield ann.waitForLine(r"MSG \d+ ann before the restart")
        last = self.lastSeq(ann)
        node.signalProcess("TERM")
        yield ann.waitForLine(r"BYE shutdown.*")
        yield within(process.whenEnded(), DEADLINE, "node a exiting")
        _, _, port = yield self.node(redis, "a")
        again = yield self.client(port, "ann-again")
        again.sendLine(f"RESUME {token} {last}")
        yield again.waitForLine(r"RESUMED 1 complete")
        self.assertTrue(again.lines[2].startswith(f"LEFT {last + 1} ann error"), again.transcript())

    @inlineCallbacks
    def test_frozen_node_declared_dead_closes_and_rejoins(self) -> Any:
        """
        SIGSTOP of a node for twice --node-timeout: its user is announced gone; woken, it
        delivers nothing stale, closes its connections, and serves again as a fresh node.
        """
        redis = RedisServer(self)
        yield redis.start()
        process_a, node_a, port_a = yield self.node(redis, "a")
        _, _, port_b = yield self.node(redis, "b")
        ann, token = yield self.join(port_a, "ann")
        bob, _ = yield self.join(port_b, "bob")
        yield ann.waitForLine(r"JOIN \d+ bob")
        frozen_seq = self.lastSeq(ann)
        node_a.signalProcess(signal.SIGSTOP)
        self.addCleanup(self._wake, node_a)
        yield bob.waitForLine(r"LEFT \d+ ann timeout")
        bob.sendLine("SAY said while a was frozen")
        yield bob.waitForLine(r"MSG \d+ bob said while a was frozen")
        yield deferLater(reactor, 2 * NODE_TIMEOUT - (reactor.seconds() % 1) * 0, lambda: None)
        node_a.signalProcess(signal.SIGCONT)
        yield ann.waitForLine(r"BYE shutdown.*")
        stale = [
            line
            for line in ann.lines
            if re.match(r"(MSG|JOIN|LEFT) (\d+) ", line) and int(line.split()[1]) > frozen_seq
        ]
        self.assertEqual(stale, [], "the frozen node delivered events after it was declared dead")
        yield until(lambda: b"joining afresh" in process_a.out, "node a rejoining")
        again = yield self.client(port_a, "ann-again")
        again.sendLine(f"RESUME {token} {frozen_seq}")
        yield again.waitForLine(r"RESUMED 2 complete")
        yield bob.waitForLine(r"JOIN \d+ ann")


class RedisOutageTests(ClusterTwistdTestCase):
    @inlineCallbacks
    def test_redis_stopped_five_seconds(self) -> Any:
        """
        Redis (with its append-only file) stopped for 5 s while clients chat on two nodes:
        connections kept, SAY answered ERR 503 meanwhile, and afterwards every line that was
        echoed is in the log, in order, with no node declared dead.
        """
        redis = RedisServer(self, persist=True)
        yield redis.start()
        process_a, _, port_a = yield self.node(redis, "a", "--node-timeout", "5")
        process_b, _, port_b = yield self.node(redis, "b", "--node-timeout", "5")
        ann, _ = yield self.join(port_a, "ann")
        bob, _ = yield self.join(port_b, "bob")
        yield ann.waitForLine(r"JOIN \d+ bob")
        ann.sendLines([f"SAY before {n}" for n in range(20)])
        yield bob.waitForLine(r"MSG \d+ ann before 19")
        yield redis.stop()
        start = ann.mark()
        yield deferLater(reactor, 1.5, lambda: None)
        ann.sendLine("SAY during")
        yield ann.waitForLine("ERR 503 cluster unavailable: SAY not handled", start)
        yield deferLater(reactor, 3.5, lambda: None)
        yield redis.start()
        deadline = reactor.seconds() + DEADLINE
        while not any(line.startswith("MSG ") and line.endswith(" after") for line in bob.lines):
            if reactor.seconds() > deadline:
                self.fail(bob.transcript() + process_a.output() + process_b.output())
            ann.sendLine("SAY after")
            yield deferLater(reactor, 0.5, lambda: None)
        self.assertIsNone(ann.lostReason, process_a.output())
        self.assertIsNone(bob.lostReason, process_b.output())
        self.assertEqual(self.events(bob, r"LEFT \d+ \S+ \S+"), [])
        echoed = [line for line in ann.lines if re.fullmatch(r"MSG \d+ ann .*", line)]
        seen_by_bob = [line for line in bob.lines if re.fullmatch(r"MSG \d+ ann .*", line)]
        self.assertEqual(seen_by_bob[: len(echoed)], echoed[: len(seen_by_bob)])
        seqs = [int(line.split()[1]) for line in seen_by_bob]
        self.assertEqual(seqs, list(range(seqs[0], seqs[0] + len(seqs))))

    @inlineCallbacks
    def test_redis_flushed(self) -> Any:
        """Redis lost its data (FLUSHALL): the old session is ERR 404, never a false complete, and seqs keep rising."""
        redis = RedisServer(self)
        yield redis.start()
        _, _, port_a = yield self.node(redis, "a")
        ann, token = yield self.join(port_a, "ann")
        ann.sendLine("SAY before")
        before = yield ann.waitForLine(r"MSG (\d+) ann before")
        connection = yield within(UnixConnection(redis.socket, reconnect=False), DEADLINE, "connecting")
        self.addCleanup(connection.disconnect)
        yield connection.execute_command("FLUSHALL")
        yield ann.waitForLine(r"BYE shutdown.*")
        again = None
        deadline = reactor.seconds() + DEADLINE
        while True:
            again = yield self.client(port_a, "again")
            again.sendLine(f"RESUME {token} {before.group(1)}")
            answer = yield again.waitForLine(r"ERR (404|503) .*")
            if answer.group(1) == "404" or reactor.seconds() > deadline:
                break
            yield deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(answer.group(1), "404")
        again.sendLine("NICK ann")
        welcome = yield again.waitForLine(r"WELCOME ann \S+ (\d+)")
        self.assertGreaterEqual(int(welcome.group(1)), int(before.group(1)))
        again.sendLine("SAY after")
        after = yield again.waitForLine(r"MSG (\d+) ann after")
        self.assertGreater(int(after.group(1)), int(before.group(1)))


class ReusePortTests(ClusterTwistdTestCase):
    @inlineCallbacks
    def test_two_nodes_with_reuse_port_both_listen_on_one_port(self) -> Any:
        redis = RedisServer(self)
        yield redis.start()
        port = freePort()
        processes = []
        for name in ("a", "b"):
            process, _ = self.spawn(
                "--listen", f"tcp:{port}:interface=127.0.0.1", "--reuse-port", "--redis", redis.url, "--node-name", name
            )
            yield until(
                lambda process=process: b"starting on" in process.out or process.reason is not None,
                f"node {name} listening",
            )
            processes.append(process)
        yield until(lambda: all(b"joined the cluster" in p.out for p in processes), "both nodes joining")
        for process in processes:
            self.assertIsNone(process.reason, process.output())
            self.assertNotIn(b"cannot start", process.out)


class OtherOptionsTests(ClusterTwistdTestCase):
    @inlineCallbacks
    def test_a_node_serves_the_page_and_its_websocket_with_web(self) -> Any:
        """--web holds with --redis too: the node serves the page over HTTP."""
        redis = RedisServer(self)
        yield redis.start()
        webPort = freePort()
        process, _, _ = yield self.node(redis, "a", "--web", f"tcp:{webPort}:interface=127.0.0.1")
        response = yield within(
            Agent(reactor).request(b"GET", f"http://127.0.0.1:{webPort}/".encode()), DEADLINE, "GET /"
        )
        body = yield within(readBody(response), DEADLINE, "reading GET /")
        self.assertEqual(response.code, 200, process.output())
        self.assertIn(b"<html", body.lower())

    @inlineCallbacks
    def test_state_is_ignored_with_a_warning(self) -> Any:
        """--state keeps an in-memory chat; a node's chat is in Redis: one warning, and it serves."""
        redis = RedisServer(self)
        yield redis.start()
        path = os.path.join(os.path.abspath(str(self.mktemp())), "chat.state")
        process, _, port = yield self.node(redis, "a", "--state", path)
        ann, _ = yield self.join(port, "ann")
        ann.sendLine("SAY served")
        yield ann.waitForLine(r"MSG \d+ ann served")
        self.assertIn(b"--state", process.out)
        self.assertIn(b"is ignored", process.out)


class PasswordTests(ClusterTwistdTestCase):
    @inlineCallbacks
    def test_password_from_the_environment(self) -> Any:
        """A Redis that requires a password: it comes from HBCHAT_REDIS_PASSWORD, not the command line."""
        redis = RedisServer(self, password="s3cret")
        yield redis.start()
        os.environ["HBCHAT_REDIS_PASSWORD"] = "s3cret"
        self.addCleanup(os.environ.pop, "HBCHAT_REDIS_PASSWORD", None)
        process, _, port = yield self.node(redis, "a")
        ann, _ = yield self.join(port, "ann")
        ann.sendLine("SAY authenticated")
        yield ann.waitForLine(r"MSG \d+ ann authenticated")
        self.assertNotIn(b"s3cret", process.out)

    @inlineCallbacks
    def test_wrong_password_refused_at_start(self) -> Any:
        """A wrong password: one line on stderr naming Redis's refusal (not the password), exit status 1."""
        redis = RedisServer(self, password="s3cret")
        yield redis.start()
        listen = f"tcp:{freePort()}:interface=127.0.0.1"
        url = f"unix://:badpw123@{redis.socket}"
        result = yield deferLater(
            reactor, 0, self.runTwistd, "-n", "--pidfile=", "hbchat", "--listen", listen, "--redis", url
        )
        self.assertEqual(result.returncode, 1, result.stderr)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertIn("Redis refused AUTH", lines[0])
        self.assertNotIn("badpw123", lines[0])


class StartTests(ClusterTwistdTestCase):
    def assertRefused(self, result: Any, words: str) -> None:
        self.assertEqual(result.returncode, 1, result.stderr)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertIn(words, lines[0])

    def test_bad_redis_url(self) -> None:
        self.assertRefused(self.runTwistd("-n", "hbchat", "--redis", "http://localhost"), "--redis")

    def test_bad_node_timeout(self) -> None:
        result = self.runTwistd("-n", "hbchat", "--redis", "unix:///x.sock", "--node-timeout", "soon")
        self.assertRefused(result, "--node-timeout")

    def test_bad_cluster_name(self) -> None:
        self.assertRefused(
            self.runTwistd("-n", "hbchat", "--redis", "unix:///x.sock", "--cluster-name", "a{b"), "--cluster-name"
        )

    def test_unreachable_redis(self) -> None:
        """Nobody at the socket: after the bounded wait, one line and exit status 1."""
        missing = os.path.join(self.freshDirectory(), "nobody.sock")
        result = self.runTwistd(
            "-n", "--pidfile=", "hbchat", "--listen", f"tcp:{freePort()}", "--redis", f"unix://{missing}"
        )
        self.assertRefused(result, "unreachable")

    @inlineCallbacks
    def test_other_layout_refused(self) -> Any:
        """The cluster name's keys exist with another layout: one line and exit status 1."""
        redis = RedisServer(self)
        yield redis.start()
        connection = yield within(UnixConnection(redis.socket, reconnect=False), DEADLINE, "connecting")
        self.addCleanup(connection.disconnect)
        yield connection.execute_command("HSET", "{hbchat}:meta", "layout", "something-else")
        result = yield deferLater(
            reactor,
            0,
            self.runTwistd,
            "-n",
            "--pidfile=",
            "hbchat",
            "--listen",
            f"tcp:{freePort()}",
            "--redis",
            redis.url,
        )
        self.assertRefused(result, "another layout")
