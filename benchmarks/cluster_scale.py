"""
Two hbchat nodes sharing one port (`--reuse-port`) against one node, for benchmarks/cluster.py:

- `idle`: 20,000 heartbeating connections from the independent Go driver (../shared/bench,
  /tmp/hbbench/bin/driver), spread by the kernel over two nodes, against one node holding
  them all (with and without --redis): CPU per node, PONG p50/p99, missing PONGs, drops,
  RSS per connection, the driver's own CPU and the host's foreign load.
- `spread`: fan-out latency at 1,000 msgs/s to 100 receivers (`hbchat-bench fanout`) with the
  kernel spreading the connections over two nodes, against one node without Redis.

The driver samples one PID (-pid); this module samples every process it started from
/proc/PID/stat every 0.1 s, finds the driver's window in its own samples of that PID (the
CPU-seconds the driver read at the window's start and end) and reads the other node's CPU
and RSS over the same interval.  Loopback only; every process started is stopped by PID.
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

DRIVER = "/tmp/hbbench/bin/driver"
CONNECTIONS = 19900
TICK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def more_files() -> None:
    """In the child before exec: the soft RLIMIT_NOFILE raised to the hard one.

    On the development machine the hard limit is 20,000 and cannot be raised (no CAP_SYS_RESOURCE in its
    container): a process holding 20,000 sockets has no fd left for anything else, so the runs use 19,900
    connections (CONNECTIONS)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_kib(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB


def files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def listening(pid: int, port: int) -> bool:
    """Whether `pid` holds a socket listening on 127.0.0.1:`port` (with SO_REUSEPORT a probe could reach another)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
            inodes.add(f"socket:[{fields[9]}]")
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                return True
        except OSError:
            pass
    return False


IDLE_FLAGS = ("--ping", "1", "--timeout", "3", "--max-clients", "20000")


def node(twistd: str, port: int, *extra: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [twistd, "-n", "--pidfile=", "hbchat", "--listen", f"tcp:{port}:interface=127.0.0.1", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tempfile.gettempdir(),
        preexec_fn=more_files,
    )
    deadline = time.monotonic() + 30
    while not listening(process.pid, port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait(30)
            raise SystemExit(f"twistd hbchat did not listen (exit status {process.returncode})")
        time.sleep(0.1)
    time.sleep(1.0)  # with --redis: joined the cluster (its lease) before clients come
    return process


class Sampler(threading.Thread):
    """(monotonic time, CPU seconds, RSS KiB) of each PID every 0.1 s, and its most open files (every 2 s)."""

    def __init__(self, pids: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.samples: dict[str, list[tuple[float, float, int]]] = {name: [] for name in pids}
        self.most_files = {name: 0 for name in pids}
        self.done = threading.Event()

    def run(self) -> None:
        turn = 0
        while not self.done.is_set():
            for name, pid in self.pids.items():
                try:
                    self.samples[name].append((time.monotonic(), cpu_seconds(pid), rss_kib(pid)))
                    if turn % 20 == 0:
                        self.most_files[name] = max(self.most_files[name], files(pid))
                except OSError:
                    pass
            turn += 1
            self.done.wait(0.1)

    def stop(self) -> None:
        self.done.set()
        self.join(10)

    def when(self, name: str, cpu: float) -> float:
        """The time `name`'s CPU seconds first reached `cpu` (interpolated between samples)."""
        rows = self.samples[name]
        for (t0, c0, _), (t1, c1, _) in itertools.pairwise(rows):
            if c1 >= cpu - 1e-9:
                if c1 == c0:
                    return t0
                return t0 + (t1 - t0) * max(0.0, min(1.0, (cpu - c0) / (c1 - c0)))
        return rows[-1][0]

    def at(self, name: str, moment: float) -> tuple[float, int]:
        """`name`'s CPU seconds (interpolated) and RSS at `moment`."""
        rows = self.samples[name]
        for (t0, c0, _), (t1, c1, r1) in itertools.pairwise(rows):
            if t1 >= moment:
                share = 0.0 if t1 == t0 else max(0.0, min(1.0, (moment - t0) / (t1 - t0)))
                return c0 + (c1 - c0) * share, r1
        return rows[-1][1], rows[-1][2]


def drive_idle(port: int, pid: int, connections: int, seconds: int) -> dict[str, Any]:
    document = run_json(
        [
            DRIVER,
            *("-proto", "hbchat", "-addr", f"127.0.0.1:{port}", "-scenario", "idle", "-n", str(connections)),
            *("-period", "1s", "-dur", f"{seconds}s", "-settle-max", "120s", "-max-time", "5m", "-pid", str(pid)),
            "-json",
        ],
        timeout=330,
        more_fds=True,
    )
    if document.get("error"):
        raise SystemExit(f"driver: {document['error']}")
    return document


def run_json(
    argv: list[str], after: tuple[str, ...] = (), timeout: float = 300, more_fds: bool = False
) -> dict[str, Any]:
    """
    Run a load tool (``hbchat-bench``, the Go driver) to completion, its output silenced:
    ``argv`` ends with its JSON flag, which gets a temporary file's name, then ``after`` (an
    endpoint); the JSON it wrote there.
    """
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [*argv, out.name, *after],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            preexec_fn=more_files if more_fds else None,
        )
        document: dict[str, Any] = json.loads(Path(out.name).read_text())
    return document


def idle_run(
    twistd: str,
    redis: tuple[str, int] | None,
    nodes: int,
    port: int,
    connections: int = CONNECTIONS,
    seconds: int = 10,
) -> dict[str, Any]:
    """`nodes` nodes on `port` (two: --reuse-port, one chat through Redis); the driver's idle run against them."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for index in range(nodes):
            extra = [*IDLE_FLAGS, *(["--node-name", "ab"[index], "--redis", redis[0]] if redis else [])]
            if nodes > 1:
                extra.append("--reuse-port")
            processes.append(node(twistd, port, *extra))
        pids = {"ab"[i]: p.pid for i, p in enumerate(processes)}
        base = {name: (files(pid), rss_kib(pid)) for name, pid in pids.items()}
        load = os.getloadavg()
        others = {"bench": os.getpid(), **({"redis": redis[1]} if redis else {})}
        sampler = Sampler({**pids, **others})
        sampler.start()
        try:
            document = drive_idle(port, pids["a"], connections, seconds)
        finally:
            sampler.stop()
        result = document["idle"]
        start = sampler.when("a", result["server_window_start"]["cpu_s"])
        end = sampler.when("a", result["server_window_end"]["cpu_s"])
        window = float(result["window_s"])
        per_node: dict[str, dict[str, float]] = {}
        for name in pids:  # the nodes; then Redis and this process (its sampling), for the foreign load
            cpu0, _ = sampler.at(name, start)
            cpu1, rss1 = sampler.at(name, end)
            # Connections the node held: its most open files, less those before connecting.
            held = max(1, sampler.most_files[name] - base[name][0])
            per_node[name] = {
                "cpu_percent": 100.0 * (cpu1 - cpu0) / window,
                "connections": held,
                "rss_kib_per_connection": (rss1 - base[name][1]) / held,
            }
        per_node["a"]["cpu_percent"] = 100.0 * float(result["server_cpu_util"])  # the driver's own reading
        for name in others:
            per_node[name] = {"cpu_percent": 100.0 * (sampler.at(name, end)[0] - sampler.at(name, start)[0]) / window}
        host = float(sum(result["host_cpu_busy"])) * 100.0
        ours = sum(n["cpu_percent"] for n in per_node.values()) + 100.0 * float(result["driver_cpu_util"])
        return {
            "nodes": per_node,
            "connected": result["connected"],
            "p50_ms": result["pong_rtt"]["p50_ms"],
            "p99_ms": result["pong_rtt"]["p99_ms"],
            "missing": result["missing_pongs"],
            "drops": result["drops_total"],
            "ramp_s": result["ramp_s"],
            "window_s": window,
            "driver_cpu_percent": 100.0 * float(result["driver_cpu_util"]),
            "host_busy_percent": host,
            "foreign_percent": host - ours,
            "loadavg_before": load[0],
        }
    finally:
        for process in processes:
            process.send_signal(signal.SIGKILL)
            process.wait(30)


def fanout(bench: str, port: int, seconds: int = 10) -> dict[str, Any]:
    """``hbchat-bench fanout`` at 1,000 msgs/s from 4 senders to 100 receivers: its results."""
    arguments = ("--rate", "1000", "--receivers", "100", "--senders", "4", "--duration", str(seconds))
    document = run_json([bench, "fanout", *arguments, "--json"], after=(f"tcp:127.0.0.1:{port}",))
    return document["fanout"]  # type: ignore[no-any-return]


def spread_run(twistd: str, bench: str, redis: tuple[str, int] | None, port: int) -> dict[str, Any]:
    """`hbchat-bench fanout` (1,000 msgs/s, 4 senders, 100 receivers) against one node without Redis (`redis`
    None) or two nodes of one cluster sharing `port` (--reuse-port): the kernel spreads the 104 connections."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for name in "ab" if redis else "a":
            extra = ["--rate", "0", *(["--redis", redis[0], "--node-name", name, "--reuse-port"] if redis else [])]
            processes.append(node(twistd, port, *extra))
        pids = {"ab"[i]: p.pid for i, p in enumerate(processes)}
        base = {name: files(pid) for name, pid in pids.items()}
        load = os.getloadavg()
        sampler = Sampler(pids)
        sampler.start()
        try:
            result = fanout(bench, port)
        finally:
            sampler.stop()
        latency = result["latency"]
        return {
            "p50_ms": latency["p50_ms"],
            "p99_ms": latency["p99_ms"],
            "loss": result["loss"],
            "connections": {name: sampler.most_files[name] - base[name] for name in pids},
            "loadavg_before": load[0],
        }
    finally:
        for process in processes:
            process.send_signal(signal.SIGKILL)
            process.wait(30)
