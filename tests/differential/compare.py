"""What a scenario left behind, made comparable across the two tools.

A snapshot holds the calls' outcomes, the process's exit code, the rows of every table of the
store and the artifact tree (names and bytes). Normalising replaces what legitimately differs
between two runs of one script: run ids, random run names, the scenario's directory and
timestamps of the moment the scenario ran.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import time

# Files the harness itself puts in a scenario's directory.
_HARNESS_FILES = {"observations.json", "stdout.txt", "stderr.txt"}
# Stores at the top of the scenario's directory are compared by their rows, not bytes.
_STORE_FILES = re.compile(r"^[^/]+\.db(-wal|-shm|-journal)?$")
_RUN_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")
# MLflow's random run names: adjective-noun-number.
_RANDOM_NAME = re.compile(r"^[a-z]+-[a-z]+-\d{1,4}$")
# Temporary directories and random uuids in messages and file names.
_TEMP_DIR = re.compile(r"/tmp/tmp[a-z0-9_]{8}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Millisecond timestamps inside a message (MLflow quotes them in some errors).
_MS_IN_TEXT = re.compile(r"(?<!\d)1\d{12}(?!\d)")
# Timestamps of the session, in ms: anything within a day of now.
_NOW_MS = int(time.time() * 1000)
_DAY_MS = 86_400_000


def snapshot(directory: str, exit_code: int) -> dict:
    with open(os.path.join(directory, "observations.json")) as f:
        observations = json.load(f)
    return {
        "exit": exit_code,
        "observations": observations,
        "tables": _all_tables(directory),
        "files": _files(directory),
    }


def _all_tables(directory: str) -> dict:
    """The rows of mlflow.db, and of any other store the scenario made (``other.db:runs``)."""
    out = _tables(os.path.join(directory, "mlflow.db"))
    for name in sorted(os.listdir(directory)):
        if name.endswith(".db") and name != "mlflow.db":
            for table, rows in _tables(os.path.join(directory, name)).items():
                out[f"{name}:{table}"] = rows
    return out


def _tables(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        out = {}
        for name in names:
            cursor = conn.execute(f'SELECT * FROM "{name}"')
            columns = [c[0] for c in cursor.description]
            out[name] = {"columns": columns, "rows": [list(row) for row in cursor]}
        return out
    finally:
        conn.close()


def _files(directory: str) -> dict:
    out = {}
    for base, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if not (base == directory and d in ("spool", "inputs"))]
        for name in files:
            path = os.path.join(base, name)
            relative = os.path.relpath(path, directory)
            if base == directory and (name in _HARNESS_FILES or _STORE_FILES.match(name)):
                continue
            with open(path, "rb") as f:
                data = f.read()
            try:
                text = data.decode()
                out[relative] = text if len(text) < 4000 else _digest(data)
            except UnicodeDecodeError:
                out[relative] = _digest(data)
    return dict(sorted(out.items()))


def _digest(data: bytes) -> str:
    return f"<{len(data)} bytes sha256 {hashlib.sha256(data).hexdigest()[:16]}>"


class Normaliser:
    def __init__(self, directory: str):
        self.directory = os.path.realpath(directory)
        self.ids: dict[str, str] = {}

    def run_id(self, found: str) -> str:
        if found not in self.ids:
            self.ids[found] = f"<run{len(self.ids) + 1}>"
        return self.ids[found]

    def text(self, value: str) -> str:
        value = value.replace(self.directory, "<dir>")
        value = _TEMP_DIR.sub("<tmp>", value)
        value = _UUID.sub("<uuid>", value)
        value = _RUN_ID.sub(lambda m: self.run_id(m.group(0)), value)
        value = _MS_IN_TEXT.sub(
            lambda m: "<now>" if abs(int(m.group(0)) - _NOW_MS) < _DAY_MS else m.group(0), value
        )
        if _RANDOM_NAME.match(value):
            return "<random name>"
        return value

    def value(self, value):
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and abs(value - _NOW_MS) < _DAY_MS:
            return "<now>"
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {self.text(k): self.value(v) for k, v in value.items()}
        return value


def normalise(snap: dict, directory: str) -> dict:
    norm = Normaliser(directory)
    observations = [{k: v for k, v in o.items() if k != "at"} for o in snap["observations"]]
    # Run ids get their names in the order the scenario met them, then in the order the
    # runs were started.
    observations = norm.value(observations)
    runs = snap["tables"].get("runs")
    if runs:
        start = runs["columns"].index("start_time")
        for row in sorted(runs["rows"], key=lambda r: r[start] or 0):
            norm.run_id(row[0])
    tables = {}
    for name, table in snap["tables"].items():
        rows = [norm.value(row) for row in table["rows"]]
        tables[name] = {
            "columns": table["columns"],
            "rows": sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str)),
        }
    files = {norm.text(k): norm.value(v) for k, v in snap["files"].items()}
    return {
        "exit": snap["exit"],
        "observations": observations,
        "tables": tables,
        "files": dict(sorted(files.items())),
    }


def differences(ours: dict, theirs: dict) -> list[str]:
    """Readable differences between two normalised snapshots (empty when they agree)."""
    found = []
    if ours["exit"] != theirs["exit"]:
        found.append(f"exit code: fastflow {ours['exit']}, mlflow {theirs['exit']}")
    a, b = ours["observations"], theirs["observations"]
    for i in range(max(len(a), len(b))):
        left = a[i] if i < len(a) else None
        right = b[i] if i < len(b) else None
        if left != right:
            found.append(f"call {i}:\n  fastflow: {_short(left)}\n  mlflow:   {_short(right)}")
    for name in sorted(set(ours["tables"]) | set(theirs["tables"])):
        left = ours["tables"].get(name)
        right = theirs["tables"].get(name)
        if left == right:
            continue
        if left is None or right is None:
            found.append(f"table {name}: only in {'mlflow' if left is None else 'fastflow'}")
            continue
        if left["columns"] != right["columns"]:
            found.append(f"table {name} columns: {left['columns']} vs {right['columns']}")
            continue
        extra = [r for r in left["rows"] if r not in right["rows"]]
        missing = [r for r in right["rows"] if r not in left["rows"]]
        found.append(
            f"table {name} ({left['columns']}):\n  only fastflow: {_short(extra)}"
            f"\n  only mlflow:   {_short(missing)}"
        )
    files_a, files_b = ours["files"], theirs["files"]
    for path in sorted(set(files_a) | set(files_b)):
        if files_a.get(path) != files_b.get(path):
            found.append(
                f"file {path}:\n  fastflow: {_short(files_a.get(path))}"
                f"\n  mlflow:   {_short(files_b.get(path))}"
            )
    return found


def _short(value, limit=1500) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "..."
