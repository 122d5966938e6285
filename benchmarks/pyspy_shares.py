"""
Where the server's time goes, from py-spy's collapsed stacks (``py-spy record --format raw``,
as ``benchmarks/targets.sh profile10k`` writes them).

py-spy samples wall time; a sample whose innermost frame is the reactor's poll
(``EPollReactor.doPoll``: mostly waiting in ``epoll_wait``) or the read pacer's pause
(``ReadPacer._pause``: ``time.sleep``) is a wait, not work, and is left out.  The rest is
grouped into the parts docs/performance.md names, as shares of the working samples.

    python benchmarks/pyspy_shares.py STACKS [--top N]
"""

from __future__ import annotations

import argparse
import collections
from collections.abc import Iterable

#: Innermost frames that are waits.
WAITS = ("EPollReactor.doPoll", "ReadPacer._pause")

#: Parts, by a frame anywhere in the stack; the first that matches takes the sample.
PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("sending (the PONG's send, write-through)", ("_WriteThrough.__call__",)),
    (
        "pingers (LoopingCall ticks: Deferreds, rescheduling, the skip decision)",
        ("LoopingCall.__call__", "Pinger.__call__"),
    ),
    ("hbchat's own handling of a read (framing, limits, verbs)", ("ChatServerProtocol.dataReceived",)),
    ("Twisted's read dispatch (logging context, doRead, recv)", ("_doReadOrWrite", "callWithLogger")),
    ("other timers (heap comparisons, reactor's timed-call loop, coarse clock)", ("runUntilCurrent",)),
]


def frame_name(frame: str) -> str:
    """``func (path/file.py:12)`` -> ``func``."""
    return frame.split(" (", 1)[0]


def shares(lines: Iterable[str]) -> tuple[int, int, collections.Counter[str], collections.Counter[str]]:
    """Working samples, waiting samples, samples per part, and self samples per function."""
    parts: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    working = waiting = 0
    for line in lines:
        stack, _, count_text = line.rstrip("\n").rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_name(frame) for frame in stack.split(";")]
        if frames[-1] in WAITS:
            waiting += count
            continue
        working += count
        leaves[frames[-1]] += count
        for part, markers in PARTS:
            if any(marker in frame for frame in frames for marker in markers):
                parts[part] += count
                break
        else:
            parts["the rest of the reactor loop"] += count
    return working, waiting, parts, leaves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stacks", help="py-spy record --format raw output")
    parser.add_argument("--top", type=int, default=15, help="functions to list by their own samples")
    args = parser.parse_args()
    with open(args.stacks, encoding="utf-8") as stacks:
        working, waiting, parts, leaves = shares(stacks)
    if not working:
        raise SystemExit(f"{args.stacks}: no working samples")
    print(f"{working} working samples ({waiting} waiting, left out)")
    for part, count in parts.most_common():
        print(f"{100 * count / working:5.1f} %  {part}")
    print("by function (own samples):")
    for name, count in leaves.most_common(args.top):
        print(f"{100 * count / working:5.1f} %  {name}")


if __name__ == "__main__":
    main()
