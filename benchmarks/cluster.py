#!/usr/bin/env python3
"""
What Redis adds to hbchat, measured on this machine (docs/cluster.md, "Measurements").

    python benchmarks/cluster.py order      # events one cluster orders per second (hb_batch, pipelined)
    python benchmarks/cluster.py latency    # fanout p50/p99: one node without Redis vs a node of two
    python benchmarks/cluster.py heartbeat  # 2000 idle connections: server CPU without and with --redis
    python benchmarks/cluster.py reuse      # 19,900 idle connections: two nodes on one port vs one node
    python benchmarks/cluster.py reuse --connections 10000   # the same below one node's knee
    python benchmarks/cluster.py spread     # fanout p50/p99: receivers spread over two nodes vs one node
    python benchmarks/cluster.py all        # order, latency, heartbeat (not reuse, spread)

Starts its own redis-server (UNIX socket in a temporary directory, no persistence) and its
own `twistd hbchat` processes, on loopback only, and stops every one of them by PID.  Each
measurement is run three times; the medians are printed with the min-max range.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cluster_scale
import hiredis
from cluster_scale import CONNECTIONS, idle_run, run_json, spread_run

BIN = Path(sys.executable).parent
REPEATS = 3


def command(*arguments: bytes) -> bytes:
    return b"*%d\r\n" % len(arguments) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in arguments)


class Redis:
    """A redis-server of our own, and a blocking RESP connection to it."""

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="hbchat-bench-redis-")
        self.socket = os.path.join(self.directory, "redis.sock")
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                "0",
                "--unixsocket",
                self.socket,
                "--dir",
                self.directory,
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not os.path.exists(self.socket):
            if time.monotonic() > deadline:
                raise SystemExit("redis-server did not start")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def connect(self) -> tuple[socket.socket, Any]:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.socket)
        return sock, hiredis.Reader()

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)
        shutil.rmtree(self.directory, True)


def ask(sock: socket.socket, reader: Any, count: int = 1) -> list[Any]:
    replies: list[Any] = []
    while len(replies) < count:
        reply = reader.gets()
        if reply is False:
            reader.feed(sock.recv(1 << 20))
            continue
        if isinstance(reply, hiredis.ReplyError):
            raise SystemExit(f"Redis: {reply}")
        replies.append(reply)
    return replies


def order(seconds: float = 5.0, batch: int = 100, depth: int = 8) -> dict[str, float]:
    """hb_batch calls of `batch` MSGs each, `depth` in flight: events/s and Redis CPU per event."""
    redis = Redis()
    try:
        from hbchat.cluster.node import LIBRARY

        sock, reader = redis.connect()
        meta = b"{bench}:meta"
        sock.sendall(command(b"FUNCTION", b"LOAD", b"REPLACE", LIBRARY))
        ask(sock, reader)
        sock.sendall(command(b"FCALL", b"hb_join", b"1", meta, b"n/1", b"60000", b"e", b"0"))
        ask(sock, reader)
        sock.sendall(
            command(
                b"FCALL",
                b"hb_batch",
                b"1",
                meta,
                b"n/1",
                b"e",
                b"0",
                b"1000",
                b"10000",
                b"N",
                b"ann",
                b"ann",
                b"tok",
                b"n/1/1",
                b"120000",
            )
        )
        ask(sock, reader)
        text = b"x" * 64
        ops = [b"FCALL", b"hb_batch", b"1", meta, b"n/1", b"e", b"0", b"1000", b"10000"]
        for _ in range(batch):
            ops += [b"M", b"tok", b"n/1/1", text]
        one = command(*ops)
        cpu0, start = redis.cpu_seconds(), time.monotonic()
        sent = answered = 0
        sock.sendall(one * depth)
        sent = depth
        while time.monotonic() - start < seconds:
            ask(sock, reader)
            answered += 1
            sock.sendall(one)
            sent += 1
        ask(sock, reader, sent - answered)
        elapsed = time.monotonic() - start
        events = sent * batch
        cpu = redis.cpu_seconds() - cpu0
        sock.close()
        return {"events_per_second": events / elapsed, "redis_cpu_us_per_event": cpu / events * 1e6}
    finally:
        redis.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def twistd(port: int, *extra: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            str(BIN / "twistd"),
            "-n",
            "--pidfile=",
            "hbchat",
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
            "--rate",
            "0",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tempfile.gettempdir(),
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("twistd hbchat did not listen") from None
            time.sleep(0.1)
    time.sleep(0.5)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(30)


def fanout(port: int) -> dict[str, float]:
    result = cluster_scale.fanout(str(BIN / "hbchat-bench"), port)
    return {"p50_ms": result["latency"]["p50_ms"], "p99_ms": result["latency"]["p99_ms"], "loss": result["loss"]}


def latency() -> dict[str, list[dict[str, float]]]:
    """Alternating runs: one node without Redis, then node A of a two-node cluster (bench on A)."""
    runs: dict[str, list[dict[str, float]]] = {"single": [], "cluster": []}
    for _ in range(REPEATS):
        port = free_port()
        single = twistd(port)
        try:
            runs["single"].append(fanout(port))
        finally:
            stop(single)
        redis = Redis()
        port_a, port_b = free_port(), free_port()
        a = twistd(port_a, "--redis", redis.url, "--node-name", "a")
        b = twistd(port_b, "--redis", redis.url, "--node-name", "b")
        try:
            runs["cluster"].append(fanout(port_a))
        finally:
            stop(a)
            stop(b)
            redis.stop()
    return runs


def server_cpu(document: dict[str, Any]) -> float:
    server = document.get("server") or {}
    if "cpu_util_window" in server:
        return 100.0 * float(server["cpu_util_window"])
    raise SystemExit(f"no server CPU in the idle results: {sorted(server)}")


def idle(port: int, pid: int) -> dict[str, float]:
    arguments = ("--clients", "2000", "--period", "1", "--duration", "10", "--server-pid", str(pid))
    document = run_json([str(BIN / "hbchat-bench"), "idle", *arguments, "--json"], after=(f"tcp:127.0.0.1:{port}",))
    return {"server_cpu": server_cpu(document), "p99_ms": document["idle"]["pong_rtt"]["p99_ms"]}


def heartbeat() -> dict[str, list[dict[str, float]]]:
    """2000 idle connections PINGing every second: the server's CPU, without and with --redis."""
    runs: dict[str, list[dict[str, float]]] = {"single": [], "cluster": []}
    for _ in range(REPEATS):
        port = free_port()
        single = twistd(port)
        try:
            runs["single"].append(idle(port, single.pid))
        finally:
            stop(single)
        redis = Redis()
        port_a = free_port()
        a = twistd(port_a, "--redis", redis.url, "--node-name", "a")
        try:
            runs["cluster"].append(idle(port_a, a.pid))
        finally:
            stop(a)
            redis.stop()
    return runs


def reuse(connections: int = CONNECTIONS) -> dict[str, list[dict[str, Any]]]:
    """The Go driver's idle run, 19,900 connections PINGing every second, in rotation: one node without Redis, one
    node with --redis, two nodes with --reuse-port on one port (one cluster)."""
    runs: dict[str, list[dict[str, Any]]] = {"single": [], "single --redis": [], "two nodes --reuse-port": []}
    for _ in range(REPEATS):
        runs["single"].append(idle_run(str(BIN / "twistd"), None, 1, free_port(), connections))
        for name, nodes in (("single --redis", 1), ("two nodes --reuse-port", 2)):
            redis = Redis()
            try:
                redis_ids = (redis.url, redis.process.pid)
                runs[name].append(idle_run(str(BIN / "twistd"), redis_ids, nodes, free_port(), connections))
            finally:
                redis.stop()
        print(json.dumps({name: results[-1] for name, results in runs.items()}), flush=True)
    return runs


def spread() -> dict[str, list[dict[str, Any]]]:
    """Alternating runs: one node without Redis, then two nodes of one cluster on one port (--reuse-port), the
    kernel spreading the load tool's receivers and senders over both."""
    runs: dict[str, list[dict[str, Any]]] = {"single": [], "two nodes --reuse-port": []}
    twistd, bench = str(BIN / "twistd"), str(BIN / "hbchat-bench")
    for _ in range(REPEATS):
        runs["single"].append(spread_run(twistd, bench, None, free_port()))
        redis = Redis()
        try:
            runs["two nodes --reuse-port"].append(
                spread_run(twistd, bench, (redis.url, redis.process.pid), free_port())
            )
        finally:
            redis.stop()
        print(json.dumps({name: results[-1] for name, results in runs.items()}), flush=True)
    return runs


def print_reuse(runs: dict[str, list[dict[str, Any]]], connections: int) -> None:
    print(f"reuse: {connections} idle connections, client PING every 1 s, --ping 1 --timeout 3")
    for name, results in runs.items():
        print(f"  {name}:")
        for node in [n for n in results[0]["nodes"]]:
            figures = [r["nodes"][node] for r in results]
            line = f"    {node}: CPU % " + summary([f["cpu_percent"] for f in figures])
            if "connections" in figures[0]:
                line += " | connections " + summary([f["connections"] for f in figures])
                line += " | RSS KiB/conn " + summary([f["rss_kib_per_connection"] for f in figures])
            print(line)
        for key in ("p50_ms", "p99_ms", "missing", "drops", "connected", "ramp_s", "driver_cpu_percent"):
            print(f"    {key} " + summary([float(r[key]) for r in results]))
        for key in ("host_busy_percent", "foreign_percent", "loadavg_before"):
            print(f"    {key} " + summary([float(r[key]) for r in results]))


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["order", "latency", "heartbeat", "reuse", "spread", "all"])
    parser.add_argument("--connections", type=int, default=CONNECTIONS, help="reuse: idle connections in all")
    arguments = parser.parse_args()
    what = arguments.what
    if what in ("order", "all"):
        for batch in (100, 1):
            results = [order(batch=batch) for _ in range(REPEATS)]
            print(
                f"order, {batch} per batch: events/s",
                summary([r["events_per_second"] for r in results]),
                "| Redis CPU us/event",
                summary([r["redis_cpu_us_per_event"] for r in results]),
            )
    if what in ("latency", "all"):
        runs = latency()
        for name, results in runs.items():
            print(
                f"latency {name}: p50 ms",
                summary([r["p50_ms"] for r in results]),
                "| p99 ms",
                summary([r["p99_ms"] for r in results]),
                "| loss",
                summary([r["loss"] for r in results]),
            )

    if what == "reuse":
        print_reuse(reuse(arguments.connections), arguments.connections)
    if what == "spread":
        for name, results in spread().items():
            print(
                f"spread {name}: p50 ms",
                summary([r["p50_ms"] for r in results]),
                "| p99 ms",
                summary([r["p99_ms"] for r in results]),
                "| loss",
                summary([r["loss"] for r in results]),
                "| connections per node",
                [r["connections"] for r in results],
            )

    if what in ("heartbeat", "all"):
        for name, results in heartbeat().items():
            print(
                f"heartbeat {name}: server CPU %",
                summary([r["server_cpu"] for r in results]),
                "| PONG p99 ms",
                summary([r["p99_ms"] for r in results]),
            )


if __name__ == "__main__":
    main()
