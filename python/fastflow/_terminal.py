"""What the ``fastflow`` command prints: tables that fit the terminal, colours only where
they help (a terminal, and ``NO_COLOR`` unset), sparklines and a progress bar."""

from __future__ import annotations

import math
import os
import shutil
import sys
import time

SPARKS = "▁▂▃▄▅▆▇█"
WIDTH = 80

_CODES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}
_STATUS_COLOURS = {"FINISHED": "green", "RUNNING": "cyan", "FAILED": "red", "KILLED": "yellow"}


def colours_on(stream=None) -> bool:
    """Colours on a terminal only, and never when ``NO_COLOR`` is set (no-color.org)."""
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR"):
        return False
    return hasattr(stream, "isatty") and stream.isatty()


def width() -> int:
    """The terminal's width, at most 80 columns when it cannot be told (pipes, files)."""
    if sys.stdout.isatty():
        return max(40, shutil.get_terminal_size((WIDTH, 24)).columns)
    return WIDTH


def paint(text: str, style: str, on: bool) -> str:
    if not on or not style or not text:
        return text
    return f"\033[{_CODES[style]}m{text}\033[0m"


def status_style(status: str) -> str:
    return _STATUS_COLOURS.get(status, "")


def clip(text: str, room: int) -> str:
    if room <= 0:
        return ""
    if len(text) <= room:
        return text
    return text[: max(0, room - 1)] + "…"


def clip_middle(text: str, room: int) -> str:
    """Long paths keep their start and their end."""
    if len(text) <= room:
        return text
    if room < 5:
        return clip(text, room)
    head = (room - 1) // 2
    return text[:head] + "…" + text[len(text) - (room - 1 - head) :]


def when(ms) -> str:
    """Local time to the minute; the year only when it is not this one."""
    if not ms:
        return "-"
    moment = time.localtime(ms / 1000)
    if moment.tm_year == time.localtime().tm_year:
        return time.strftime("%m-%d %H:%M", moment)
    return time.strftime("%Y-%m-%d %H:%M", moment)


def duration(start_ms, end_ms, now_ms=None) -> str:
    if not start_ms:
        return "-"
    end = end_ms or now_ms or int(time.time() * 1000)
    seconds = max(0, (end - start_ms) / 1000)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


def number(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.4g}"
    return str(value)


def sparkline(values, room: int) -> str:
    """At most ``room`` characters, scaled between the series' finite min and max; NaN and
    infinities are blanks. A longer series is cut into ``room`` stretches, each drawn by
    its last point, or by the series' min or max where the stretch holds one."""
    values = list(values)
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite or room <= 0:
        return ""
    low, high = min(finite), max(finite)
    if len(values) > room:
        drawn = []
        for i in range(room):
            stretch = values[i * len(values) // room : (i + 1) * len(values) // room]
            if low in stretch:
                drawn.append(low)
            elif high in stretch:
                drawn.append(high)
            else:
                drawn.append(stretch[-1])
        values = drawn
    span = high - low
    out = []
    for v in values:
        if not (isinstance(v, (int, float)) and math.isfinite(v)):
            out.append(" ")
        elif span == 0:
            out.append(SPARKS[len(SPARKS) // 2])
        else:
            out.append(SPARKS[min(len(SPARKS) - 1, int((v - low) / span * len(SPARKS)))])
    return "".join(out)


def table(headers, rows, styles=None, on=False, room=None, minimum=None, keep=None) -> str:
    """Left-aligned columns that fit ``room`` (the terminal, 80 columns off a terminal).
    Columns wider than their ``minimum`` (10 by default) shrink first, the widest first,
    their cells clipped with …; past that, columns from ``keep`` on are dropped from the
    right. ``styles`` gives each cell's colour, row by row."""
    room = room or width()
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    columns = len(headers)
    widths = [max(len(row[i]) for row in cells) for i in range(columns)]
    floor = [min(widths[i], (minimum or {}).get(i, 10)) for i in range(columns)]
    gap = 2

    def total(n):
        return sum(widths[:n]) + gap * (n - 1)

    shown = columns
    while total(shown) > room:
        slack = [widths[i] - floor[i] for i in range(shown)]
        widest = max(range(shown), key=lambda i: slack[i])
        if slack[widest] > 0:
            widths[widest] -= 1
        elif keep is not None and shown > keep:
            shown -= 1
        else:
            break
    lines = []
    for r, row in enumerate(cells):
        parts = []
        for i in range(shown):
            text = clip(row[i], widths[i])
            pad = " " * (widths[i] - len(text))
            if r == 0:
                text = paint(text, "bold", on)
            elif styles is not None:
                text = paint(text, styles[r - 1][i], on)
            parts.append(text + pad)
        lines.append((" " * gap).join(parts).rstrip())
    return "\n".join(lines)


class Progress:
    """A one-line bar on stderr, redrawn in place on a terminal; elsewhere a line at the
    start and one at the end, so that logs stay readable."""

    def __init__(self, total: int, label: str, stream=None):
        self.total = max(0, total)
        self.label = label
        self.stream = stream or sys.stderr
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.shown = -1
        if not self.live:
            print(f"{label}: {self.total:,} points", file=self.stream)

    def update(self, done: int) -> None:
        if not self.live:
            return
        done = min(done, self.total) if self.total else done
        if done == self.shown:
            return
        self.shown = done
        share = done / self.total if self.total else 1.0
        bar_room = max(10, min(width(), WIDTH) - len(self.label) - 30)
        filled = int(share * bar_room)
        bar = "█" * filled + "░" * (bar_room - filled)
        self.stream.write(f"\r{self.label} {bar} {share * 100:5.1f}% {done:,}/{self.total:,}")
        self.stream.flush()

    def finish(self, done: int) -> None:
        if self.live:
            self.update(done)
            self.stream.write("\n")
        else:
            print(f"{self.label}: {done:,} of {self.total:,} points delivered", file=self.stream)
        self.stream.flush()
