"""What SIGHUP does in each part of the server's life (hbchat.hangup), without a reactor or a signal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from hbchat.ops.hangup import RELOAD_OUTCOMES, HangupCore, hangup_machine


class FakeTLS:
    def __init__(self, usable: bool = True) -> None:
        self.usable = usable
        self.reloads = 0

    def reload(self) -> bool:
        self.reloads += 1
        return self.usable


def texts(events: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(event["log_format"], event.get("state", "")) for event in events]


class HangupTests(SynchronousTestCase):
    def test_without_ssl_listeners_a_hangup_logs_nothing_to_reload(self) -> None:
        core = HangupCore([])
        machine = hangup_machine(core)
        with capturedLogs() as events:
            self.assertEqual(machine.hangup(), "nothing")
        self.assertEqual(texts(events), [("SIGHUP: nothing to reload (no ssl: listener)", "serving")])
        self.assertEqual(core.outcomes["nothing"], 1)

    def test_a_hangup_reloads_every_ssl_listener(self) -> None:
        first, second = FakeTLS(), FakeTLS()
        core = HangupCore([first, second])
        machine = hangup_machine(core)
        with capturedLogs() as events:
            self.assertEqual(machine.hangup(), "reloaded")
        self.assertEqual((first.reloads, second.reloads), (1, 1))
        self.assertEqual(texts(events), [("SIGHUP: reloading TLS certificates", "serving")])
        self.assertEqual(core.outcomes["reloaded"], 1)

    def test_one_unusable_listener_fails_the_reload_but_the_others_still_reload(self) -> None:
        broken, fine = FakeTLS(usable=False), FakeTLS()
        core = HangupCore([broken, fine])
        self.assertEqual(hangup_machine(core).hangup(), "failed")
        self.assertEqual(fine.reloads, 1)
        self.assertEqual(core.outcomes["failed"], 1)

    def test_a_hangup_while_draining_still_reloads(self) -> None:
        tls = FakeTLS()
        machine = hangup_machine(HangupCore([tls]))
        machine.drain()
        with capturedLogs() as events:
            self.assertEqual(machine.hangup(), "reloaded")
        self.assertEqual(tls.reloads, 1)
        self.assertEqual(texts(events), [("SIGHUP: reloading TLS certificates", "draining")])

    def test_a_hangup_while_draining_without_ssl_listeners_says_nothing_to_reload(self) -> None:
        machine = hangup_machine(HangupCore([]))
        machine.drain()
        with capturedLogs() as events:
            self.assertEqual(machine.hangup(), "nothing")
        self.assertEqual(texts(events), [("SIGHUP: nothing to reload (no ssl: listener)", "draining")])

    def test_once_stopped_a_hangup_reloads_nothing(self) -> None:
        tls = FakeTLS()
        core = HangupCore([tls])
        machine = hangup_machine(core)
        machine.drain()
        machine.stop()
        with capturedLogs() as events:
            self.assertEqual(machine.hangup(), "nothing")
        self.assertEqual(tls.reloads, 0)
        self.assertEqual(texts(events), [("SIGHUP after the server stopped: nothing to reload", "stopped")])

    def test_a_service_started_again_reloads_again(self) -> None:
        tls = FakeTLS()
        machine = hangup_machine(HangupCore([tls]))
        machine.drain()
        machine.stop()
        machine.start()
        self.assertEqual(machine.hangup(), "reloaded")
        self.assertEqual(tls.reloads, 1)

    def test_every_hangup_is_counted_by_outcome(self) -> None:
        tls = FakeTLS()
        core = HangupCore([tls])
        machine = hangup_machine(core)
        machine.hangup()
        tls.usable = False
        machine.hangup()
        machine.stop()
        machine.hangup()
        self.assertEqual(
            {outcome: core.outcomes[outcome] for outcome in RELOAD_OUTCOMES}, dict.fromkeys(RELOAD_OUTCOMES, 1)
        )
