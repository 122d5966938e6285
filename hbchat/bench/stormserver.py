"""
The storm's server: one ``twistd -n hbchat`` (or ``--server-cmd``) at a time on a loopback
port, started, signalled and killed by PID, and the kernel's listen-queue counters.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from hbchat.bench.stormclock import BenchmarkError, log, now, sleep

HOST = "127.0.0.1"
#: Words in a server log line that mean something went wrong.
PROBLEM_WORDS = ("traceback", "unhandled", "refused", "critical", "cannot")
#: Linux TcpExt counters (system-wide) that tell how the listen queue coped.
KERNEL_COUNTERS = ("ListenOverflows", "ListenDrops", "SyncookiesSent", "SyncookiesRecv", "TCPReqQFullDoCookies")


def kernel_counters() -> dict[str, int]:
    """Linux's system-wide TcpExt listen-queue counters (empty where unreadable)."""
    try:
        rows = [line.split() for line in Path("/proc/net/netstat").read_text().splitlines()]
    except OSError:
        return {}
    for names, values in zip(rows[::2], rows[1::2], strict=False):
        if names and names[0] == "TcpExt:":
            table = dict(zip(names[1:], values[1:], strict=False))
            return {name: int(table[name]) for name in KERNEL_COUNTERS if name in table}
    return {}


def find_twistd() -> str:
    candidate = Path(sys.executable).with_name("twistd")
    if not candidate.exists():
        raise SystemExit(f"storm: no twistd next to {sys.executable}; install hbchat into this environment")
    return str(candidate)


#: The storm's server settings (besides --listen and --retry-hint): a slow heartbeat, so
#: that what is measured is reconnection, and room for every client.
SERVER_OPTIONS = ("--ping", "5", "--timeout", "15", "--max-clients", "20000")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class Server:
    """
    One ``twistd -n hbchat`` at a time on a fixed loopback port, started and stopped by PID.

    With ``template`` (a command line with ``{port}`` in it) that command is run instead, and
    it is listening once a TCP connect to the port succeeds; ``twistd hbchat`` is listening
    once its log says so.
    """

    def __init__(
        self, port: int, options: list[str], workdir: Path, backlog: int | None = None, template: str | None = None
    ) -> None:
        self.port = port
        self.options = options
        self.backlog = backlog
        self.workdir = workdir
        self.template = template
        self.name = "twistd" if template is None else "the server command"
        self.process: subprocess.Popen[bytes] | None = None
        #: Every process spawned, so that none outlives the benchmark (a graceful stop may
        #: still be flushing BYEs when the next one starts).
        self.spawned: list[subprocess.Popen[bytes]] = []
        self.logpath: Path | None = None
        self._starts = 0

    def command(self) -> list[str]:
        if self.template is not None:
            return shlex.split(self.template.replace("{port}", str(self.port)))
        return twistd_command(str(self.port), self.options, self.backlog)

    def spawn(self) -> None:
        self._starts += 1
        self.logpath = self.workdir / f"twistd-{self.port}-{self._starts}.log"
        with open(self.logpath, "wb") as logfile:
            self.process = subprocess.Popen(
                self.command(),
                stdout=logfile,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.spawned.append(self.process)
        RUNNING.add(self)

    async def start(self, timeout: float = 15.0, bind_retries: int = 20) -> float:
        """Spawn, and respawn while the port cannot be bound; returns when it listens."""
        self.spawn()
        respawns = 0
        deadline = now() + timeout
        marker = f"starting on {self.port}".encode()
        while now() < deadline:
            assert self.process is not None and self.logpath is not None
            if self._listening(marker):
                return now()
            if self.process.poll() is not None:
                if respawns >= bind_retries:
                    raise BenchmarkError(f"{self.name} exited {self.process.returncode}; see {self.logpath}")
                await sleep(0.1)
                respawns += 1
                self.spawn()
                continue
            await sleep(0.01)
        raise BenchmarkError(f"{self.name} did not listen on {self.port} within {timeout}s; see {self.logpath}")

    def _listening(self, marker: bytes) -> bool:
        assert self.logpath is not None
        if self.template is None:
            return marker in self.logpath.read_bytes()
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signum)

    async def reaped(self, timeout: float) -> bool:
        """Wait (boundedly) for the current process to exit; SIGKILL it if it will not."""
        process = self.process
        if process is None:
            return True
        deadline = now() + timeout
        while process.poll() is None and now() < deadline:
            await sleep(0.005)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(5)
            return False
        return True

    def problems(self, limit: int = 5) -> tuple[int, list[str]]:
        """Lines of our twistd logs that look like trouble (tracebacks, refusals, criticals)."""
        count, examples = 0, list[str]()
        for path in sorted(self.workdir.glob(f"twistd-{self.port}-*.log")):
            for line in path.read_text(errors="replace").splitlines():
                lowered = line.lower()
                if any(word in lowered for word in PROBLEM_WORDS):
                    count += 1
                    if len(examples) < limit:
                        examples.append(line[:300])
        return count, examples

    def kill_now(self) -> None:
        """Cleanup: SIGKILL every process we spawned that still runs, by PID, and reap it."""
        for process in self.spawned:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    log(f"twistd pid {process.pid} did not die")
        RUNNING.discard(self)


#: Servers with processes that may still run; killed at reactor shutdown whatever happens.
RUNNING: set[Server] = set()


def kill_all_servers() -> None:
    for server in list(RUNNING):
        server.kill_now()


def twistd_command(port: str, options: Sequence[str], backlog: int | None = None) -> list[str]:
    """The ``twistd -n hbchat`` command line of the benchmark's own server."""
    listen = f"tcp:{port}:interface={HOST}" + (f":backlog={backlog}" if backlog else "")
    return [find_twistd(), "-n", "--pidfile=", "hbchat", "--listen", listen, *options]


def default_server_command(backlog: int | None = None) -> str:
    """What ``hbchat-bench storm`` runs when not given ``--server-cmd`` (the benchmark's server)."""
    return shlex.join(twistd_command("{port}", [*SERVER_OPTIONS, "--retry-hint", "{retry_hint}"], backlog))
