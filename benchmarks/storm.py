#!/usr/bin/env python3
"""
Reconnect storm: N clients, a server restart, and when every one of them tries to come back.

The logic lives in :mod:`hbchat.bench.storm` (``hbchat-bench storm`` runs it too); this
script is its front end for the measurement in docs/performance.md.

One process (this script's reactor) connects N :class:`hbchat.client.ChatClientFactory`
clients over loopback to a ``twistd hbchat`` subprocess, then stops the server and starts a
new one on the same port a fixed delay later.  Every connection attempt the clients make
is timestamped relative to the stop, as is the moment each client is registered again.

Scenarios (``--scenarios``):

* ``stock-crash``: SIGKILL (no BYE, pure backoff) with Twisted's stock
  ``ReconnectingClientFactory.retry``: Gaussian jitter around a delay that starts at 1 s
  and grows by a factor of e, capped at 30 s.
* ``hbchat-crash``: SIGKILL with hbchat's own retry: full jitter, uniform(0, min(30, 2**n)).
* ``hbchat-graceful``: SIGTERM; the server says ``BYE shutdown retry=S`` (``--retry-hint``)
  and the clients come back after uniform(0, S).
* ``stock-crash-quick``, ``hbchat-crash-quick``: the crashes again, with the new server
  spawned after ``--quick-restart-delay`` (0.2 s), i.e. up before the stock clients' first
  retry at about 1 s, which then lands on it in one wave.
* ``stock-graceful`` (not run by default): SIGTERM with the stock retry, which ignores the hint.

``--smoke`` runs only the first three, with 50 clients.

Outputs: a JSON file with everything measured, a PNG with the attempts per 100 ms of each
scenario, and a "Reconnect storm" section in ``performance.md`` next to the PNG.

Usage::

    python benchmarks/storm.py --clients 2000 --out docs/   # about 2 minutes
    python benchmarks/storm.py --smoke      # 50 clients, ~25 s, exit 1 unless all come back
    python benchmarks/storm.py --from-json benchmarks/storm-results.json --out docs/  # redraw only

``--smoke`` writes into a fresh temporary directory unless ``--out`` is given.  Needs
matplotlib for the PNG (``pip install matplotlib``); without it the plot is skipped.
Loopback only.  Every wait is bounded, the whole run has a time budget, and the servers it
started are killed by PID when it ends, also on SIGINT or SIGTERM.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hbchat.bench.storm import main as storm_main

#: The checkout: docs/ and benchmarks/storm-results.json are written here by default.
REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    return storm_main(argv, repo=REPO)


if __name__ == "__main__":
    sys.exit(main())
