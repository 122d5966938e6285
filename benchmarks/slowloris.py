#!/usr/bin/env python3
"""
Slowloris from one loopback address: how long a legitimate login takes meanwhile.

Starts ``twistd -n hbchat`` on a free loopback port (``--max-handshakes`` and
``--register-timeout`` as given, defaults 500 and 10), opens ``--silent`` connections to it
that never send a byte (non-blocking connects, as fast as the kernel takes them; loopback
is exempt from ``--max-per-ip``), and meanwhile, one every ``--spacing`` seconds, makes
``--logins`` legitimate logins: connect, wait for HELLO, NICK, wait for WELCOME.  Prints
each login's time from its connect and a summary as JSON.  Loopback only; every wait is
bounded (a login that takes over ``--give-up`` seconds counts as failed); the server it
started is killed by PID at the end.

Usage::

    python benchmarks/slowloris.py                       # 10,000 silent, 12 logins, ~20 s
    python benchmarks/slowloris.py --silent 2000 --max-handshakes 50
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def twistd() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "twistd")
    return beside if os.access(beside, os.X_OK) else "twistd"


def wait_listening(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the server did not start listening")


def read_until(sock: socket.socket, prefix: bytes, deadline: float) -> bool:
    data = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            return False
        if not chunk:
            return False
        data += chunk
        if any(line.startswith(prefix) for line in data.split(b"\n")):
            return True
    return False


def login(port: int, nick: str, give_up: float, results: list[dict[str, object]]) -> None:
    started = time.monotonic()
    deadline = started + give_up
    outcome = "failed"
    hello_at = None
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=give_up) as sock:
            if read_until(sock, b"HELLO", deadline):
                hello_at = time.monotonic() - started
                sock.sendall(f"NICK {nick}\n".encode())
                if read_until(sock, b"WELCOME", deadline):
                    outcome = "ok"
    except OSError as error:
        outcome = f"failed: {error}"
    took = time.monotonic() - started
    results.append({"nick": nick, "outcome": outcome, "hello_s": hello_at, "welcome_s": round(took, 3)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--silent", type=int, default=10000)
    parser.add_argument("--logins", type=int, default=12)
    parser.add_argument("--spacing", type=float, default=0.5)
    parser.add_argument("--max-handshakes", type=int, default=500)
    parser.add_argument("--register-timeout", type=float, default=10)
    parser.add_argument("--give-up", type=float, default=40)
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.silent + 1000)), hard))
    port = free_port()
    directory = tempfile.mkdtemp(prefix="slowloris-")
    command = [
        twistd(), "-n", "--pidfile=", "hbchat", "--listen", f"tcp:{port}:interface=127.0.0.1",
        "--max-handshakes", str(args.max_handshakes), "--register-timeout", str(args.register_timeout),
        "--max-clients", str(args.silent + 1000),
    ]  # fmt: skip
    with open(os.path.join(directory, "twistd.log"), "wb") as output:
        server = subprocess.Popen(command, cwd=directory, stdout=output, stderr=subprocess.STDOUT)
    silent: list[socket.socket] = []
    try:
        wait_listening(port, time.monotonic() + 30)
        results: list[dict[str, object]] = []
        threads: list[threading.Thread] = []
        attack_started = time.monotonic()
        next_login = attack_started
        opened = 0
        while opened < args.silent or len(threads) < args.logins:
            now = time.monotonic()
            if len(threads) < args.logins and now >= next_login:
                thread = threading.Thread(target=login, args=(port, f"user{len(threads)}", args.give_up, results))
                thread.start()
                threads.append(thread)
                next_login += args.spacing
            if opened < args.silent:
                for _ in range(min(200, args.silent - opened)):
                    sock = socket.socket()
                    sock.setblocking(False)
                    sock.connect_ex(("127.0.0.1", port))
                    silent.append(sock)
                    opened += 1
            else:
                time.sleep(0.01)
        opened_in = time.monotonic() - attack_started
        for thread in threads:
            thread.join(args.give_up + 5)
        times = sorted(float(str(r["welcome_s"])) for r in results if r["outcome"] == "ok")
        summary = {
            "silent": args.silent,
            "opened_in_s": round(opened_in, 2),
            "max_handshakes": args.max_handshakes,
            "register_timeout": args.register_timeout,
            "logins": args.logins,
            "ok": len(times),
            "min_s": times[0] if times else None,
            "median_s": times[len(times) // 2] if times else None,
            "max_s": times[-1] if times else None,
            "results": sorted(results, key=lambda r: str(r["nick"])),
        }
        print(json.dumps(summary, indent=1))
        return 0 if len(times) == args.logins else 1
    finally:
        for sock in silent:
            sock.close()
        server.kill()
        server.wait(10)


if __name__ == "__main__":
    sys.exit(main())
