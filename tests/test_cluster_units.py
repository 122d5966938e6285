"""The cluster's lifecycle machine and the batch of a turn, without a reactor (task.Clock)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial import unittest

import hbchat
from hbchat.cluster import batch as batch_module
from hbchat.cluster.batch import MAX_OPS_PER_CALL, Batch, ClusterUnavailableError
from hbchat.cluster.membership import LifeCore, Phase, Reaction, node_life
from tests.test_house import cycles, imported, module_graph


class MembershipTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.core = LifeCore()
        self.life = node_life(self.core)

    def test_starts_joining(self) -> None:
        self.assertIs(self.core.phase, Phase.JOINING)

    def test_joined_serves(self) -> None:
        self.assertIs(self.life.joined(), Reaction.SERVE)
        self.assertIs(self.core.phase, Phase.UP)

    def test_joining_retries_when_lost(self) -> None:
        self.assertIs(self.life.lost(), Reaction.RECONNECT)
        self.assertIs(self.core.phase, Phase.JOINING)

    def test_up_lost_is_cut_off(self) -> None:
        self.life.joined()
        self.assertIs(self.life.lost(), Reaction.RECONNECT)
        self.assertIs(self.core.phase, Phase.CUT_OFF)

    def test_cut_off_back_with_lease_serves(self) -> None:
        self.life.joined()
        self.life.lost()
        self.assertIs(self.life.joined(), Reaction.SERVE)
        self.assertIs(self.core.phase, Phase.UP)

    def test_cut_off_still_lost_reconnects(self) -> None:
        self.life.joined()
        self.life.lost()
        self.assertIs(self.life.lost(), Reaction.RECONNECT)
        self.assertIs(self.core.phase, Phase.CUT_OFF)

    def test_declared_dead_when_up_rejoins(self) -> None:
        self.life.joined()
        self.assertIs(self.life.declared_dead(), Reaction.REJOIN)
        self.assertIs(self.core.phase, Phase.JOINING)

    def test_declared_dead_after_being_cut_off_rejoins(self) -> None:
        self.life.joined()
        self.life.lost()
        self.assertIs(self.life.declared_dead(), Reaction.REJOIN)
        self.assertIs(self.core.phase, Phase.JOINING)

    def test_stopped_ignores_everything(self) -> None:
        self.life.joined()
        self.life.stop()
        for event in (self.life.joined, self.life.lost, self.life.declared_dead, self.life.stop):
            self.assertIs(event(), Reaction.NOTHING)
        self.assertIs(self.core.phase, Phase.STOPPED)


class BatchTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.sent: list[tuple[list[Any], Deferred[Any]]] = []
        self.deaths = 0
        self.latencies: list[float] = []
        self.batch = Batch(self.clock, self.send, self.died, self.latencies.append)

    def send(self, ops: list[Any]) -> Deferred[Any]:
        answer: Deferred[Any] = Deferred()
        self.sent.append((ops, answer))
        return answer

    def died(self) -> None:
        self.deaths += 1

    def test_one_send_per_turn(self) -> None:
        """Operations of one turn go out together at its end, in order."""
        self.batch.submit([b"M", b"t", b"a", b"one"])
        self.batch.submit([b"M", b"t", b"a", b"two"])
        self.assertEqual(self.sent, [])
        self.clock.advance(0)
        self.assertEqual([ops for ops, _ in self.sent], [[b"M", b"t", b"a", b"one", b"M", b"t", b"a", b"two"]])

    def test_a_big_turn_goes_out_in_several_calls(self) -> None:
        """More than MAX_OPS_PER_CALL operations: several calls (Redis never blocked long), answers in order."""
        answers = [self.batch.submit([b"M", n]) for n in range(2 * MAX_OPS_PER_CALL + 1)]
        self.clock.advance(0)
        self.assertEqual([len(ops) // 2 for ops, _ in self.sent], [MAX_OPS_PER_CALL, MAX_OPS_PER_CALL, 1])
        start = 0
        for ops, answer in self.sent:
            count = len(ops) // 2
            answer.callback([b"ok", b"epoch", *range(start, start + count)])
            start += count
        self.assertEqual([self.successResultOf(answer) for answer in answers], list(range(2 * MAX_OPS_PER_CALL + 1)))

    def test_full_while_too_much_is_out(self) -> None:
        """Operations sent and unanswered plus those collected reach MAX_IN_FLIGHT: full, until answers come."""
        self.patch(batch_module, "MAX_IN_FLIGHT", 3)
        self.batch.submit([b"M"])
        self.batch.submit([b"M"])
        self.clock.advance(0)
        self.assertFalse(self.batch.full)
        self.batch.submit([b"M"])
        self.assertTrue(self.batch.full)
        self.sent[0][1].callback([b"ok", b"epoch", 1, 2])
        self.assertFalse(self.batch.full)

    def test_each_operation_gets_its_answer(self) -> None:
        first = self.batch.submit([b"M"])
        second = self.batch.submit([b"M"])
        self.clock.advance(0)
        self.clock.advance(0.002)
        self.sent[0][1].callback([b"ok", b"epoch", 7, 8])
        self.assertEqual((self.successResultOf(first), self.successResultOf(second)), (7, 8))
        self.assertEqual(self.latencies, [0.002])

    def test_pipelined(self) -> None:
        """The next turn's batch goes out without waiting for the answer to the one before."""
        self.batch.submit([b"M"])
        self.clock.advance(0)
        self.batch.submit([b"M"])
        self.clock.advance(0)
        self.assertEqual(len(self.sent), 2)

    def test_dead_fails_all_and_tells(self) -> None:
        answer = self.batch.submit([b"M"])
        self.clock.advance(0)
        self.sent[0][1].callback([b"dead"])
        self.failureResultOf(answer, ClusterUnavailableError)
        self.assertEqual(self.deaths, 1)

    def test_lost_answer_fails_all(self) -> None:
        answer = self.batch.submit([b"M"])
        self.clock.advance(0)
        self.sent[0][1].errback(ConnectionError("lost"))
        self.failureResultOf(answer, ClusterUnavailableError)

    def test_nobody_to_send_to(self) -> None:
        batch = Batch(self.clock, lambda ops: None, self.died, self.latencies.append)
        answer = batch.submit([b"M"])
        self.clock.advance(0)
        self.failureResultOf(answer, ClusterUnavailableError)

    def test_fail_all_before_sending(self) -> None:
        answer = self.batch.submit([b"M"])
        self.batch.fail_all()
        self.failureResultOf(answer, ClusterUnavailableError)
        self.clock.advance(0)
        self.assertEqual(self.sent, [])


class ShapeTests(unittest.SynchronousTestCase):
    def test_no_import_cycle_through_the_cluster(self) -> None:
        """hbchat.cluster, the server, operations and the shared modules import nothing that imports them back."""
        graph = module_graph(Path(hbchat.__file__).parent, "hbchat")
        ours = {
            name
            for name in graph
            if name.startswith(("hbchat.cluster", "hbchat.server", "hbchat.ops")) or name.count(".") == 1
        }
        self.assertEqual(cycles({name: graph[name] & ours if name in ours else set() for name in graph}), [])

    def test_the_server_core_imports_nothing_from_the_cluster(self) -> None:
        """Only the tap (lazily, with --redis) names hbchat.cluster: the core knows only IChat."""
        server = Path(hbchat.__file__).parent / "server"
        offenders = {
            path.name
            for path in server.glob("*.py")
            if any(name.startswith("hbchat.cluster") for name in imported(path))
        }
        self.assertEqual(offenders, {"tap.py"})
