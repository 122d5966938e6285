"""The JSON lines log observer."""

from __future__ import annotations

import io
import json
import sys

from twisted.logger import Logger, LoggingFile, LogLevel
from twisted.python.reflect import namedAny
from twisted.trial.unittest import SynchronousTestCase

from hbchat.ops.logs import JSONLinesObserver, event_as_dict, json_observer


class JSONLinesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.out = io.StringIO()
        self.log = Logger(namespace="hbchat.test", observer=JSONLinesObserver(self.out))

    def records(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.out.getvalue().splitlines()]

    def test_one_flat_object_per_line_with_the_events_fields(self) -> None:
        self.log.info("{nick} timed out after {idle:.1f}s", nick="bob", idle=90.04, peer="127.0.0.1:5000")
        self.log.warn("second")
        first, second = self.records()
        self.assertEqual(first["text"], "bob timed out after 90.0s")
        self.assertEqual(first["format"], "{nick} timed out after {idle:.1f}s")
        self.assertEqual(first["level"], "info")
        self.assertEqual(first["namespace"], "hbchat.test")
        self.assertEqual((first["nick"], first["idle"], first["peer"]), ("bob", 90.04, "127.0.0.1:5000"))
        self.assertRegex(str(first["time"]), r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(second["level"], "warn")

    def test_values_that_are_not_json_are_shown_plainly(self) -> None:
        self.log.info("x", data=b"caf\xc3\xa9", thing=object(), words=("a", "b"))
        [record] = self.records()
        self.assertEqual(record["data"], "caf\u00e9")
        self.assertTrue(str(record["thing"]).startswith("<object object"))
        self.assertEqual(record["words"], ["a", "b"])

    def test_a_failure_adds_its_traceback(self) -> None:
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            self.log.failure("it broke")
        [record] = self.records()
        self.assertEqual(record["level"], "critical")
        self.assertIn("ZeroDivisionError", str(record["traceback"]))
        self.assertNotIn("log_failure", record)

    def test_bookkeeping_keys_are_left_out(self) -> None:
        record = event_as_dict(
            {"log_format": "hi", "log_level": LogLevel.info, "log_time": 0.0, "message": ("hi",), "isError": 0}
        )
        self.assertEqual(
            record,
            {"time": "1970-01-01T00:00:00.000Z", "level": "info", "namespace": None, "text": "hi", "format": "hi"},
        )

    def test_the_twistd_factory_writes_to_stdout(self) -> None:
        observer = json_observer()
        self.assertIsInstance(observer, JSONLinesObserver)
        self.assertIn(observer.out, (sys.stdout, sys.__stdout__))

    def test_when_stdout_is_already_the_log_it_writes_around_it(self) -> None:
        self.patch(sys, "stdout", LoggingFile(Logger()))
        self.assertIs(json_observer().out, sys.__stdout__)


class LoggerOptionTests(SynchronousTestCase):
    def test_twistd_logger_name_is_still_hbchat_logs_json_observer(self) -> None:
        """``twistd --logger hbchat.logs.json_observer`` names the observer that hbchat.ops.logs defines."""
        self.assertIs(namedAny("hbchat.logs.json_observer"), json_observer)
