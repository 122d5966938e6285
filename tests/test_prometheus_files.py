"""
The Prometheus files in docs/prometheus/, checked by promtool: the scrape configuration,
the alert rules and their unit tests; and docs/operations.md shows them as they are.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from prometheus_client import generate_latest
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from hbchat.ops.metrics import chat_registry
from hbchat.testing import FakeServer
from tests.test_metrics import findPromtool


def checkout() -> Path:
    """The source checkout (tox says where; otherwise the one these tests are in)."""
    named = os.environ.get("HBCHAT_CHECKOUT")
    root = Path(named) if named else Path(__file__).resolve().parent.parent
    if not (root / "docs" / "prometheus").is_dir():
        if os.environ.get("CI") == "true" or named:
            raise AssertionError(f"no docs/prometheus/ in {root}")
        raise SkipTest(f"no source checkout at {root}")
    return root


class PrometheusFilesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = checkout() / "docs" / "prometheus"

    def promtool(self, *arguments: str) -> None:
        result = subprocess.run(
            [findPromtool(), *arguments], cwd=self.directory, capture_output=True, text=True, timeout=60, check=False
        )
        self.assertEqual(result.returncode, 0, f"promtool {' '.join(arguments)}:\n{result.stdout}{result.stderr}")

    def test_the_scrape_configuration_is_valid(self) -> None:
        self.promtool("check", "config", "prometheus.yml")

    def test_the_alert_rules_are_valid(self) -> None:
        self.promtool("check", "rules", "hbchat-alerts.yml")

    def test_the_alerts_fire_when_they_should_and_not_before(self) -> None:
        self.promtool("test", "rules", "hbchat-alerts.test.yml")

    def test_the_alerts_use_metrics_the_server_exposes(self) -> None:
        exposed = generate_latest(chat_registry(FakeServer().factory)).decode()
        names = set(re.findall(r"^# TYPE (\w+)", exposed, re.MULTILINE))
        used = set(re.findall(r"\bhbchat_\w+", (self.directory / "hbchat-alerts.yml").read_text()))
        self.assertTrue(used)
        for name in used:
            family = re.sub(r"_bucket$", "", name)
            self.assertIn(family, names, f"{name} is used by an alert but not exposed")

    def test_operations_md_shows_the_files_as_they_are(self) -> None:
        text = (self.directory.parent / "operations.md").read_text()
        for name in ("prometheus.yml", "hbchat-alerts.yml"):
            self.assertIn(
                (self.directory / name).read_text(), text, f"docs/operations.md does not show {name} as it is"
            )
