"""
JSON lines for twistd's log: ``twistd --logger hbchat.logs.json_observer -n hbchat``.

twistd's ``--logger`` takes the dotted name of a callable that returns a log observer.
:func:`json_observer` writes one JSON object per line on standard output, flushed at once
(for journald, a container runtime, or a pipe into a log shipper):

    {"time": "2025-01-01T12:00:00.123Z", "level": "info", "namespace": "hbchat.server.ChatFactory",
     "text": "alice registered from 127.0.0.1:50412", "nick": "alice", "peer": "127.0.0.1:50412"}

``text`` is the event as twistd's plain log shows it, and ``format`` the template it was
made from (the same for every event of a kind: ``"{nick} registered from {peer}"``); the
event's own fields follow, as they were logged (bytes decoded as UTF-8, anything that is
not plain JSON as its repr).  A failure adds ``traceback``.  twistd's other bookkeeping
keys (``log_*``, and the legacy ``message``, ``isError``, ``time``, ``why``, ``failure``)
are left out.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import IO, Any

from twisted.logger import ILogObserver, LogEvent, LoggingFile, formatEvent
from zope.interface import implementer

#: Keys of an event that are twistd's bookkeeping rather than what was logged.
_LEGACY_KEYS = frozenset({"message", "format", "isError", "time", "why", "failure", "printed"})


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list | tuple) and all(isinstance(item, str | int | float | bool) for item in value):
        return list(value)
    return repr(value)


def event_as_dict(event: LogEvent) -> dict[str, Any]:
    """One event as the flat object :class:`JSONLinesObserver` writes."""
    when = event.get("log_time")
    level = event.get("log_level")
    record: dict[str, Any] = {
        "time": None
        if when is None
        else datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": getattr(level, "name", None) or ("error" if event.get("isError") else "info"),
        "namespace": event.get("log_namespace"),
        "text": formatEvent(event),
    }
    template = event.get("log_format")
    if isinstance(template, str) and template != "{log_text}":
        # The same for every event of a kind: what to filter on, where ``text`` varies.
        record["format"] = template
    system = event.get("log_system")
    if system is not None:
        record["system"] = _plain(system)
    for key, value in event.items():
        if key.startswith("log_") or key in _LEGACY_KEYS or key in record:
            continue
        record[key] = _plain(value)
    failure = event.get("log_failure")
    if failure is not None:
        try:
            record["traceback"] = failure.getTraceback()
        except Exception:
            record["traceback"] = repr(failure)
    return record


@implementer(ILogObserver)
class JSONLinesObserver:
    """Writes every event as one line of JSON to ``out`` and flushes it."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def __call__(self, event: LogEvent) -> None:
        try:
            line = json.dumps(event_as_dict(event), ensure_ascii=False, separators=(",", ":"))
        except Exception as error:  # a log observer must never raise
            line = json.dumps({"level": "error", "text": f"unloggable event: {error!r}"})
        self.out.write(line + "\n")
        self.out.flush()


def json_observer() -> JSONLinesObserver:
    """For ``twistd --logger hbchat.logs.json_observer``: JSON lines on standard output."""
    out = sys.stdout
    if isinstance(out, LoggingFile) or out is None:
        # Standard output already goes to the log (twistd redirects it): write around that.
        out = sys.__stdout__
    assert out is not None, "no standard output to log to"
    return JSONLinesObserver(out)
