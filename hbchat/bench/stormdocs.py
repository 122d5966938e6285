"""
The docs writer: puts the "Reconnect storm" section into a performance.md, leaving every
other section alone.  Only ``benchmarks/storm.py --docs`` calls it.
"""

from __future__ import annotations

from pathlib import Path

from hbchat.bench.stormreport import SECTION_TITLE


def write_section(md: Path, text: str) -> None:
    """Replace (or append) the "Reconnect storm" section, leaving every other section alone."""
    if not md.exists():
        md.write_text("# Performance\n\n" + text)
        return
    lines = md.read_text().splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == SECTION_TITLE), None)
    if start is None:
        body = "".join(lines)
        md.write_text(body + ("" if body.endswith("\n") else "\n") + "\n" + text)
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith(("# ", "## "))), len(lines))
    replacement = text if end == len(lines) else text + "\n"
    md.write_text("".join(lines[:start]) + replacement + "".join(lines[end:]))
