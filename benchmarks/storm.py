#!/usr/bin/env python3
"""
Reconnect storm: N clients, a server restart, and when every one of them tries to come back.

The logic lives in :mod:`hbchat.bench.stormrun` (``hbchat-bench storm`` runs it too); this
script is its front end for the measurement in docs/performance.md.

The scenarios, what is timed and what is written are described in
:mod:`hbchat.bench.storm`.

Usage::

    python benchmarks/storm.py --clients 2000 --docs   # about 2 minutes; rewrites the docs section
    python benchmarks/storm.py --clients 300           # the same, into a temporary directory only
    python benchmarks/storm.py --smoke      # 50 clients, ~25 s, exit 1 unless all come back
    python benchmarks/storm.py --from-json benchmarks/storm-results.json --docs  # redraw only

Only ``--docs`` writes into the checkout: the "Reconnect storm" section of
docs/performance.md (nothing else in it), docs/storm.png and benchmarks/storm-results.json.
Without it the section is printed, and the PNG and the JSON go to ``--out`` or a fresh
temporary directory.  Needs matplotlib for the PNG (``pip install matplotlib``); without it
the plot is skipped.
Loopback only.  Every wait is bounded, the whole run has a time budget, and the servers it
started are killed by PID when it ends, also on SIGINT or SIGTERM.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hbchat.bench.stormrun import main as storm_main

#: The checkout: docs/ and benchmarks/storm-results.json are written here by default.
REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    return storm_main(argv, repo=REPO)


if __name__ == "__main__":
    sys.exit(main())
