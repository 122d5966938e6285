"""
The reconnect storm's pure parts (no reactor, no server): what ``benchmarks/storm.py`` writes
where, the docs writer, the report text, the options and the results' JSON.

The storm's real runs (servers, clients) are in tests/test_bench.py (``test_storm_smoke``).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any
from unittest import mock

from twisted.trial import unittest

from hbchat.bench import stormdocs, stormoptions, stormreport, stormresults, stormrun
from hbchat.bench.stormrecord import Recorder
from hbchat.bench.stormresults import Result, Settings, Storm

#: Saved results of a real storm, shipped with the repository (tox names the checkout: the
#: tests run from a copy of tests/ beside the installed wheel).
SAVED = (
    Path(os.environ.get("HBCHAT_CHECKOUT") or Path(__file__).resolve().parent.parent)
    / "benchmarks"
    / "storm-results.json"
)

PERFORMANCE_MD = """# Performance

## Fan-out

Numbers nobody may touch.

## Reconnect storm

The old storm text.

## Later section

More numbers.
"""


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "clients": 20,
        "rate": 500.0,
        "max_pending": 200,
        "restart_delay": 1.0,
        "quick_restart_delay": 0.2,
        "retry_hint": 2.0,
        "connect_deadline": 60.0,
        "storm_deadline": 20.0,
        "seed": 1,
    }
    values.update(overrides)
    return Settings(**values)


def result(**overrides: Any) -> Result:
    values: dict[str, Any] = {
        "name": "hbchat-crash",
        "variant": "hbchat",
        "stop": "crash",
        "clients": 20,
        "all_back": True,
        "back_count": 20,
        "time_all_back": 2.5,
        "back_p50": 1.25,
        "back_p99": 2.5,
        "restart_delay": 1.0,
        "server_listening_at": 1.4,
        "losses_noticed": [0.01, 0.02],
        "old_server_exited_at": 0.0,
        "retry_hint": 2.0,
        "peak_per_bin": 7,
        "peak_bin_start": 1.5,
        "live_peak_per_bin": 5,
        "live_peak_bin_start": 1.5,
        "total_attempts": 26,
        "failed_attempts": 6,
        "unfinished_attempts": 0,
        "max_connect_latency": 0.01,
        "slow_connects": 0,
        "kernel_counters": {},
        "stalled_connections": 0,
        "server_log_problems": 0,
        "server_log_examples": [],
        "gave_up": 0,
        "initial_connect_seconds": 0.2,
        "histogram": [1, 2],
        "reached_histogram": [0, 2],
        "attempts": [0.05, 0.15, 0.16],
        "back_times": [1.0, 2.5],
    }
    values.update(overrides)
    return Result(**values)


class Checkout:
    """A throwaway checkout with a docs/performance.md, for ``benchmarks/storm.py`` to (not) write."""

    def __init__(self, case: unittest.TestCase) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="storm-checkout-"))
        case.addCleanup(_remove, self.root)
        (self.root / "docs").mkdir()
        (self.root / "benchmarks").mkdir()
        self.performance = self.root / "docs" / "performance.md"
        self.performance.write_text(PERFORMANCE_MD)

    def storm(self, *argv: str) -> tuple[int, str]:
        """``benchmarks/storm.py ARGV`` run against this checkout; (exit status, stdout)."""
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = stormrun.main(list(argv), repo=self.root)
        return code, out.getvalue()

    def files(self) -> list[str]:
        return sorted(str(path.relative_to(self.root)) for path in self.root.rglob("*") if path.is_file())


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


class BenchmarkScriptDocsTests(unittest.TestCase):
    """``benchmarks/storm.py`` writes docs/performance.md only when told to (``--docs``)."""

    def test_by_default_it_leaves_docs_performance_md_alone(self) -> None:
        checkout = Checkout(self)
        code, out = checkout.storm("--from-json", str(SAVED))
        self.assertEqual(code, 0)
        self.assertIn(stormreport.SECTION_TITLE, out)  # the section is shown, not written
        self.assertEqual(checkout.performance.read_text(), PERFORMANCE_MD)
        self.assertEqual(checkout.files(), ["docs/performance.md"])

    def test_no_docs_is_still_accepted_and_writes_nothing(self) -> None:
        checkout = Checkout(self)
        code, _ = checkout.storm("--from-json", str(SAVED), "--no-docs")
        self.assertEqual(code, 0)
        self.assertEqual(checkout.performance.read_text(), PERFORMANCE_MD)

    def test_docs_replaces_only_the_storm_section_of_the_checkouts_performance_md(self) -> None:
        checkout = Checkout(self)
        code, out = checkout.storm("--from-json", str(SAVED), "--docs")
        self.assertEqual(code, 0)
        text = checkout.performance.read_text()
        self.assertNotIn("The old storm text.", text)
        self.assertIn("Numbers nobody may touch.", text)
        self.assertTrue(text.endswith("## Later section\n\nMore numbers.\n"), text[-200:])
        self.assertIn(out.strip(), text)

    def test_out_without_docs_gets_no_performance_md(self) -> None:
        checkout = Checkout(self)
        elsewhere = Path(tempfile.mkdtemp(prefix="storm-out-"))
        self.addCleanup(_remove, elsewhere)
        code, _ = checkout.storm("--from-json", str(SAVED), "--out", str(elsewhere))
        self.assertEqual(code, 0)
        self.assertFalse((elsewhere / "performance.md").exists())
        self.assertEqual(checkout.performance.read_text(), PERFORMANCE_MD)

    def test_docs_and_no_docs_together_are_a_usage_error(self) -> None:
        err = io.StringIO()
        with redirect_stderr(err), self.assertRaises(SystemExit) as raised:
            stormoptions.parse_args(["--docs", "--no-docs"])
        self.assertEqual(raised.exception.code, 2)
        [*_, last] = err.getvalue().strip().splitlines()
        self.assertIn("--docs and --no-docs", last)


class OutputsTests(unittest.TestCase):
    """Where a run's PNG, performance.md and JSON go."""

    def test_without_docs_outside_the_checkout(self) -> None:
        args = stormoptions.parse_args([])
        out, json_path = stormoptions.outputs(args, Path("/checkout"))
        self.addCleanup(_remove, out)
        self.assertFalse(str(out).startswith("/checkout"), out)
        self.assertEqual(json_path, out / "storm-results.json")

    def test_with_docs_into_the_checkout(self) -> None:
        args = stormoptions.parse_args(["--docs"])
        self.assertEqual(
            stormoptions.outputs(args, Path("/checkout")),
            (Path("/checkout/docs"), Path("/checkout/benchmarks/storm-results.json")),
        )

    def test_given_paths_win(self) -> None:
        args = stormoptions.parse_args(["--docs", "--out", "/o", "--json", "/j.json"])
        self.assertEqual(stormoptions.outputs(args, Path("/checkout")), (Path("/o"), Path("/j.json")))


class WriteSectionTests(unittest.TestCase):
    """The docs writer replaces the "Reconnect storm" section and nothing else."""

    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="storm-docs-"))
        self.addCleanup(_remove, self.dir)
        self.md = self.dir / "performance.md"

    def test_replaces_the_section_in_the_middle(self) -> None:
        self.md.write_text(PERFORMANCE_MD)
        stormdocs.write_section(self.md, "## Reconnect storm\n\nNew.\n")
        self.assertEqual(
            self.md.read_text(),
            PERFORMANCE_MD.replace("The old storm text.\n", "New.\n"),
        )

    def test_replaces_the_last_section(self) -> None:
        self.md.write_text("# Performance\n\n## Reconnect storm\n\nOld.\n")
        stormdocs.write_section(self.md, "## Reconnect storm\n\nNew.\n")
        self.assertEqual(self.md.read_text(), "# Performance\n\n## Reconnect storm\n\nNew.\n")

    def test_appends_a_missing_section(self) -> None:
        self.md.write_text("# Performance\n\n## Fan-out\n\nx")
        stormdocs.write_section(self.md, "## Reconnect storm\n\nNew.\n")
        self.assertEqual(self.md.read_text(), "# Performance\n\n## Fan-out\n\nx\n\n## Reconnect storm\n\nNew.\n")

    def test_creates_a_missing_file(self) -> None:
        stormdocs.write_section(self.md, "## Reconnect storm\n\nNew.\n")
        self.assertEqual(self.md.read_text(), "# Performance\n\n## Reconnect storm\n\nNew.\n")


class ReportTests(unittest.TestCase):
    """The results in words, from the numbers alone."""

    def test_table_has_a_row_per_scenario(self) -> None:
        lines = stormreport.table([result(), result(name="stock-crash", variant="stock")]).splitlines()
        self.assertEqual(len(lines), 4)
        self.assertIn("| hbchat backoff | SIGKILL (crash), server up again at 1.40 s | 7 (at 1.5 s)", lines[2])
        self.assertIn("| stock `ReconnectingClientFactory` |", lines[3])

    def test_a_scenario_not_all_back_says_so(self) -> None:
        row = stormreport.table([result(all_back=False, time_all_back=None)]).splitlines()[2]
        self.assertIn("| not all back |", row)
        self.assertTrue(row.endswith("| - |"), row)

    def test_graceful_label_names_the_hint(self) -> None:
        self.assertEqual(
            stormreport.backoff_label(result(stop="graceful", retry_hint=10.0)), "hbchat, `BYE shutdown retry=10`"
        )

    def test_findings_word_the_stalled_connections(self) -> None:
        [point, blank] = stormreport.findings([result(stalled_connections=3, time_all_back=31.0)])
        self.assertEqual(blank, "")
        self.assertIn("3 connections were established for the client but never accepted", point)
        self.assertIn("the last came back only after 31.00 s", point)

    def test_section_starts_with_its_title_and_names_the_command(self) -> None:
        text = stormreport.section(
            [result()], settings(), "python benchmarks/storm.py --docs", "a machine", None, Path("docs/performance.md")
        )
        self.assertTrue(text.startswith(stormreport.SECTION_TITLE + "\n"))
        self.assertIn("Command: `python benchmarks/storm.py --docs`", text)
        self.assertNotIn("![", text)

    def test_section_links_the_plot_relative_to_the_markdown(self) -> None:
        text = stormreport.section(
            [result()], settings(), "c", "m", Path("docs/img/storm.png"), Path("docs/performance.md")
        )
        self.assertIn("](img/storm.png)", text)

    def test_summary_line(self) -> None:
        storm = Storm(settings(), "m", 1.0, [result(), result(name="x", all_back=False, back_count=19)])
        self.assertEqual(
            stormreport.summary_line(storm),
            "storm n=20 | hbchat-crash: all back 2.50 s, p50 1.25 s, peak 7/100ms (5 on the new server), "
            "26 attempts, 0 stalled | x: ONLY 19/20 back, p50 1.25 s, peak 7/100ms (5 on the new server), "
            "26 attempts, 0 stalled",
        )


class OptionsTests(unittest.TestCase):
    """The storm's defaults and its checks."""

    def test_smoke_defaults(self) -> None:
        args = stormoptions.parse_args(["--smoke"])
        self.assertEqual(
            (args.clients, args.retry_hint, args.deadline, args.scenarios),
            (50, 2.0, 20.0, stormresults.SMOKE_SCENARIOS),
        )

    def test_full_defaults(self) -> None:
        args = stormoptions.parse_args([])
        self.assertEqual(
            (args.clients, args.retry_hint, args.deadline, args.scenarios, args.docs),
            (2000, 10.0, 60.0, stormresults.DEFAULT_SCENARIOS, False),
        )

    def test_clients_out_of_range_is_a_usage_error(self) -> None:
        with redirect_stderr(io.StringIO()), self.assertRaises(SystemExit):
            stormoptions.parse_args(["--clients", "0"])

    def test_budget_grows_with_scenarios_and_clients(self) -> None:
        args = stormoptions.parse_args(["--smoke"])
        self.assertEqual(stormoptions.budget_for(args), 3 * (50 / 500 + 90 + 20) + 60)


class ResultsJsonTests(unittest.TestCase):
    """The results file: lists of numbers on one line, and readable back."""

    def test_saved_results_round_trip(self) -> None:
        storm = Storm(settings(), "m", 12.34, [result()])
        data = stormresults.saved(storm, "cmd")
        path = Path(tempfile.mkdtemp(prefix="storm-json-")) / "r.json"
        self.addCleanup(_remove, path.parent)
        stormresults.write_json(path, data)
        text = path.read_text()
        self.assertIn('"attempts": [0.05,0.15,0.16]', text)
        loaded = json.loads(text)
        self.assertEqual(loaded["elapsed_seconds"], 12.3)
        self.assertEqual(Result(**loaded["results"][0]), result())
        self.assertEqual(Settings(**loaded["settings"]), settings())

    def test_histogram_counts_per_bin(self) -> None:
        self.assertEqual(stormresults.histogram([0.05, 0.15, 0.16]), [1, 2])


class RecorderTests(unittest.TestCase):
    """What a scenario records, on a clock the test moves."""

    def setUp(self) -> None:
        self.time = 100.0
        patcher = mock.patch("hbchat.bench.stormrecord.now", lambda: self.time)
        patcher.start()
        self.addCleanup(patcher.stop)
        self.recorder = Recorder()

    def test_attempts_before_the_stop_are_not_counted(self) -> None:
        self.assertIsNone(self.recorder.attempt())
        self.recorder.attempt_ended(None, True)
        self.assertEqual(self.recorder.attempts, [])

    def test_an_attempt_is_timed_from_the_stop_and_its_outcome_kept(self) -> None:
        self.recorder.t0 = 100.0
        self.time = 101.5
        index = self.recorder.attempt()
        self.time = 101.75
        self.recorder.attempt_ended(index, False)
        self.assertEqual(
            (self.recorder.attempts, self.recorder.outcomes, self.recorder.latencies), ([1.5], [False], [0.25])
        )

    def test_registrations_before_the_stop_are_the_initial_ones(self) -> None:
        self.recorder.registered("a")
        self.assertEqual((self.recorder.initial, self.recorder.back), ({"a"}, {}))

    def test_only_the_first_return_after_the_stop_counts(self) -> None:
        self.recorder.t0 = 100.0
        self.time = 102.0
        self.recorder.registered("a")
        self.time = 109.0
        self.recorder.registered("a")
        self.assertEqual(self.recorder.back, {"a": 2.0})
