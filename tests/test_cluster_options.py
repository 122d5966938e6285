"""--redis, --cluster-name, --node-name, --node-timeout as twistd hbchat parses them (no network)."""

from __future__ import annotations

import os
import subprocess
import sys

from twisted.python import usage
from twisted.trial import unittest

from hbchat.cluster.options import default_node_name
from hbchat.server.tap import ServerOptions


def parse(*arguments: str) -> ServerOptions:
    options = ServerOptions()
    options.parseOptions(list(arguments))
    return options


class ClusterOptionsTests(unittest.TestCase):
    def test_off_without_redis(self) -> None:
        """Without --redis nothing changes: no cluster settings."""
        self.assertIsNone(parse().cluster)

    def test_defaults(self) -> None:
        cluster = parse("--redis", "unix:///run/redis.sock").cluster
        assert cluster is not None
        self.assertEqual((cluster.cluster_name, cluster.node_timeout), ("hbchat", 5.0))
        self.assertEqual(cluster.node_name, default_node_name())

    def test_default_node_name_is_host_and_pid(self) -> None:
        self.assertTrue(default_node_name().endswith(f"-{os.getpid()}"))

    def test_all_given(self) -> None:
        cluster = parse(
            "--redis", "redis://:pw@10.0.0.1:7000/2", "--cluster-name", "eu", "--node-name", "n1", "--node-timeout", "3"
        ).cluster
        assert cluster is not None
        self.assertEqual(
            (cluster.url.host, cluster.url.port, cluster.url.db, cluster.url.password, cluster.cluster_name),
            ("10.0.0.1", 7000, 2, "pw", "eu"),
        )
        self.assertEqual((cluster.node_name, cluster.node_timeout), ("n1", 3.0))

    def test_bad_url(self) -> None:
        error = self.assertRaises(usage.UsageError, parse, "--redis", "localhost:6379")
        self.assertIn("--redis", str(error))

    def test_node_timeout_not_a_number(self) -> None:
        self.assertRaises(usage.UsageError, parse, "--redis", "unix:///r.sock", "--node-timeout", "soon")

    def test_node_timeout_below_two_seconds(self) -> None:
        """Leases are renewed every second: a timeout under 2 s would declare live nodes dead."""
        error = self.assertRaises(usage.UsageError, parse, "--redis", "unix:///r.sock", "--node-timeout", "1")
        self.assertIn("at least 2", str(error))

    def test_node_name_needs_redis(self) -> None:
        self.assertRaises(usage.UsageError, parse, "--node-name", "a")

    def test_bad_node_name(self) -> None:
        self.assertRaises(usage.UsageError, parse, "--redis", "unix:///r.sock", "--node-name", "a b")

    def test_loading_the_plugin_installs_no_reactor(self) -> None:
        """twistd installs its reactor after loading plugins: the tap imports no txredisapi (which installs one)."""
        code = (
            "import sys, hbchat.server.tap, twisted.plugins.hbchat_plugin; "
            "print('txredisapi' in sys.modules, 'twisted.internet.reactor' in sys.modules)"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
        self.assertEqual(result.stdout.split(), ["False", "False"])
