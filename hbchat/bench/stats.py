"""
The numbers of ``hbchat-bench``, with no I/O: histograms, percentiles, message stamps.

Latencies are integers in nanoseconds.  Every worker process keeps its own
:class:`Histogram` (log-linear buckets, under 0.8 % relative error, as the Go driver in
``/work/shared/bench`` keeps them) and sends it to the parent as JSON; the parent merges
them, so no raw samples cross a pipe.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

#: Values below this are their own bucket; above, each power of two has SUB_BUCKETS buckets.
LINEAR = 256
SUB_BUCKETS = 128
#: Enough buckets for 2**39 ns (about 9 minutes); anything longer lands in the last one.
BUCKETS = 32 * SUB_BUCKETS + LINEAR
NS_PER_MS = 1_000_000


def bucket_of(value: int) -> int:
    """The bucket of a non-negative value in nanoseconds."""
    if value < LINEAR:
        return max(0, value)
    exponent = value.bit_length() - 8
    index = exponent * SUB_BUCKETS + (value >> exponent)
    return min(index, BUCKETS - 1)


def bucket_value(index: int) -> int:
    """The middle of a bucket: what a value in it is reported as."""
    if index < LINEAR:
        return index
    exponent = index // SUB_BUCKETS - 1
    mantissa = index - exponent * SUB_BUCKETS
    return (mantissa << exponent) + (1 << exponent) // 2


def bucket_bounds(index: int) -> tuple[int, int]:
    """The values ``[low, high)`` a bucket holds."""
    if index < LINEAR:
        return index, index + 1
    exponent = index // SUB_BUCKETS - 1
    mantissa = index - exponent * SUB_BUCKETS
    return mantissa << exponent, (mantissa + 1) << exponent


class Histogram:
    """Counts of nanosecond values in log-linear buckets; mergeable and JSON-friendly."""

    __slots__ = ("buckets", "count", "maximum", "minimum", "total")

    def __init__(self) -> None:
        self.buckets = [0] * BUCKETS
        self.count = 0
        self.total = 0
        self.maximum = 0
        self.minimum = 0

    def record(self, value: int) -> None:
        if value < 0:
            value = 0
        self.buckets[bucket_of(value)] += 1
        if self.count == 0 or value < self.minimum:
            self.minimum = value
        self.count += 1
        self.total += value
        if value > self.maximum:
            self.maximum = value

    def merge(self, other: Histogram) -> None:
        if other.count == 0:
            return
        mine = self.buckets
        for index, count in enumerate(other.buckets):
            if count:
                mine[index] += count
        if self.count == 0 or other.minimum < self.minimum:
            self.minimum = other.minimum
        self.count += other.count
        self.total += other.total
        self.maximum = max(self.maximum, other.maximum)

    def quantile(self, q: float) -> int:
        """The value at quantile ``q`` (0..1): the bucket holding the ``floor(q*n)``-th value."""
        if self.count == 0:
            return 0
        target = min(self.count - 1, int(q * self.count))
        seen = 0
        for index, count in enumerate(self.buckets):
            seen += count
            if seen > target:
                return max(self.minimum, min(self.maximum, bucket_value(index)))
        return self.maximum

    def stats(self) -> dict[str, float]:
        """Count, mean, p50/p90/p99/p99.9 and extremes, in milliseconds."""
        if self.count == 0:
            return {"count": 0}
        return {
            "count": self.count,
            "mean_ms": round(self.total / self.count / NS_PER_MS, 4),
            "min_ms": round(self.minimum / NS_PER_MS, 4),
            "p50_ms": round(self.quantile(0.50) / NS_PER_MS, 4),
            "p90_ms": round(self.quantile(0.90) / NS_PER_MS, 4),
            "p99_ms": round(self.quantile(0.99) / NS_PER_MS, 4),
            "p999_ms": round(self.quantile(0.999) / NS_PER_MS, 4),
            "max_ms": round(self.maximum / NS_PER_MS, 4),
        }

    def to_json(self) -> dict[str, Any]:
        """Sparse: only the buckets that counted something."""
        return {
            "count": self.count,
            "total": self.total,
            "min": self.minimum,
            "max": self.maximum,
            "buckets": [[index, count] for index, count in enumerate(self.buckets) if count],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Histogram:
        histogram = cls()
        for index, count in data["buckets"]:
            histogram.buckets[int(index)] += int(count)
        histogram.count = int(data["count"])
        histogram.total = int(data["total"])
        histogram.minimum = int(data["min"])
        histogram.maximum = int(data["max"])
        return histogram

    def rows(self) -> list[tuple[float, float, int]]:
        """``(low_ms, high_ms, count)`` of every non-empty bucket, for plots."""
        rows = []
        for index, count in enumerate(self.buckets):
            if count:
                low, high = bucket_bounds(index)
                rows.append((low / NS_PER_MS, high / NS_PER_MS, count))
        return rows


def log_bins(rows: Iterable[Sequence[float]], per_decade: int = 20) -> list[tuple[float, float, int]]:
    """
    ``(low, high, count)`` rows (from :meth:`Histogram.rows`) gathered into bins of equal width
    on a log scale, for a plot: the histogram's own buckets double in width at every power
    of two, which would show as steps.
    """
    counts: dict[int, int] = {}
    for low, high, count in rows:
        middle = (low + high) / 2
        index = math.floor(math.log10(middle) * per_decade) if middle > 0 else -10 * per_decade
        counts[index] = counts.get(index, 0) + int(count)
    return [
        (10 ** (index / per_decade), 10 ** ((index + 1) / per_decade), count) for index, count in sorted(counts.items())
    ]


def merged(histograms: Iterable[Histogram]) -> Histogram:
    total = Histogram()
    for histogram in histograms:
        total.merge(histogram)
    return total


def quantile(values: Sequence[float], q: float) -> float | None:
    """Exact nearest-rank quantile of a few values (``None`` for none)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class Timeline:
    """Per-bin counts and maxima of events after a start time (all in nanoseconds)."""

    __slots__ = ("bin_ns", "counts", "maxima", "start_ns")

    def __init__(self, start_ns: int, bin_ns: int, bins: int) -> None:
        self.start_ns = start_ns
        self.bin_ns = bin_ns
        self.counts = [0] * bins
        self.maxima = [0] * bins

    def record(self, at_ns: int, value: int) -> None:
        index = (at_ns - self.start_ns) // self.bin_ns
        if 0 <= index < len(self.counts):
            self.counts[index] += 1
            if value > self.maxima[index]:
                self.maxima[index] = value

    def merge(self, other: Timeline) -> None:
        size = max(len(self.counts), len(other.counts))
        self.counts += [0] * (size - len(self.counts))
        self.maxima += [0] * (size - len(self.maxima))
        for index, (count, maximum) in enumerate(zip(other.counts, other.maxima, strict=True)):
            self.counts[index] += count
            self.maxima[index] = max(self.maxima[index], maximum)

    def to_json(self) -> dict[str, Any]:
        return {"start_ns": self.start_ns, "bin_ns": self.bin_ns, "counts": self.counts, "maxima": self.maxima}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Timeline:
        timeline = cls(int(data["start_ns"]), int(data["bin_ns"]), 0)
        timeline.counts = [int(c) for c in data["counts"]]
        timeline.maxima = [int(m) for m in data["maxima"]]
        return timeline


def timeline_bin_ns(span_s: float) -> int:
    """100 ms bins, wider for long spans so that a timeline stays a few hundred bins."""
    return max(NS_PER_MS * 100, int(span_s / 600 * 1e9))


def histogram_of_times(times: Sequence[float], width: float) -> list[int]:
    """Counts per ``width``-second bin from 0 up to the latest time (empty for no times)."""
    if not times:
        return []
    counts = [0] * (int(max(times) / width) + 1)
    for value in times:
        counts[max(0, int(value / width))] += 1
    return counts


# --- the chat text a fanout sender says --------------------------------------------------

#: ``T<send time, ns, 19 digits> R<run tag, 4 characters> S<sender, 5 digits> N<seq, 10 digits> ``
STAMP_SIZE = 46
#: The smallest --size: the stamp and one byte of padding.
MIN_TEXT_SIZE = STAMP_SIZE + 1

#: ``(sent_ns, run tag, sender, seq)``: a plain tuple, since receivers parse every message.
Stamp = tuple[int, bytes, int, int]


def peak_to_mean(times: Sequence[float], until: float, width: float) -> tuple[int, float]:
    """
    The busiest ``width``-second bin of ``times`` and the mean over the bins from 0 to
    ``until`` (a storm's attempts, up to the moment the last client was back).
    """
    bins = max(1, math.ceil(until / width - 1e-9))
    counts = [0] * bins
    for value in times:
        index = int(value / width)
        if 0 <= index < bins:
            counts[index] += 1
    return max(counts), sum(counts) / bins


def stamp_text(sent_ns: int, run: bytes, sender: int, seq: int, padding: bytes) -> bytes:
    """The text of one fanout message: the stamp, then ``padding`` (``--size`` minus the stamp)."""
    return b"T%019d R%s S%05d N%010d %s" % (sent_ns, run, sender % 100000, seq % 10**10, padding)


def padding_for(size: int) -> bytes:
    if size < MIN_TEXT_SIZE:
        raise ValueError(f"a message text is at least {MIN_TEXT_SIZE} bytes (its stamp is {STAMP_SIZE})")
    return b"x" * (size - STAMP_SIZE)


def parse_stamp(text: bytes) -> Stamp | None:
    """``(sent_ns, run, sender, seq)`` from the stamp at the start of a chat text, or ``None``."""
    if text[20:22] != b" R" or text[26:28] != b" S" or text[33:35] != b" N" or text[45:46] != b" ":
        return None
    sent, sender, seq = text[1:20], text[28:33], text[35:45]
    if text[0:1] != b"T" or not (sent.isdigit() and sender.isdigit() and seq.isdigit()):
        return None
    return int(sent), text[22:26], int(sender), int(seq)


# --- sharing the work out ----------------------------------------------------------------


def split(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` near-equal shares, larger ones first (``[5, 5, 4]`` for 14/3)."""
    if parts <= 0:
        raise ValueError("parts must be positive")
    base, extra = divmod(total, parts)
    return [base + (1 if index < extra else 0) for index in range(parts)]


def offsets(shares: Sequence[int]) -> list[int]:
    """Where each share starts in the global numbering."""
    starts, position = [], 0
    for share in shares:
        starts.append(position)
        position += share
    return starts


def phase_ns(index: int, total: int, period_ns: int) -> int:
    """Connection ``index`` of ``total`` pings at this offset into every period: evenly spread."""
    return period_ns * index // max(1, total)


def due_slots(last: int, now: int, slots: int) -> list[int]:
    """
    The slots of a cyclic schedule passed when a position moves from ``last`` to ``now``.

    Both are absolute slot numbers (time // slot width); a move of a whole cycle or more
    returns every slot once.
    """
    if now <= last:
        return []
    if now - last >= slots:
        return list(range(slots))
    return [slot % slots for slot in range(last + 1, now + 1)]


# --- text for people ----------------------------------------------------------------------


def progress_bar(fraction: float, width: int = 24) -> str:
    """``[#########...............]  37%``"""
    fraction = min(1.0, max(0.0, fraction))
    filled = round(fraction * width)
    return "[" + "#" * filled + "." * (width - filled) + f"] {fraction * 100:3.0f}%"


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters (with an ellipsis), for one terminal line."""
    if width <= 1 or len(text) <= width:
        return text
    return text[: width - 1] + "…"


def ms(stats: dict[str, float], key: str) -> str:
    """A latency from :meth:`Histogram.stats`, for a summary line."""
    if not stats.get("count"):
        return "-"
    value = stats[key]
    return f"{value:.2f}ms" if value < 100 else f"{value:.0f}ms"
