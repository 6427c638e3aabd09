"""Runs one scenario twice, after ``import fastflow as mlflow`` and after ``import mlflow``,
each in a fresh interpreter with a store and a working directory of its own, and compares
the two SQLite stores table by table.

What legitimately differs between the two stores, and nothing else, is normalised:
- ids: run ids, logged model ids (``m-...``), dataset and input uuids, replaced wherever
  they occur (artifact URIs, ``models:/`` sources, tag values) by labels derived from
  what they name (a run by its start order, a model by its run and name, a dataset by its
  name and digest, an input by its normalised source and destination);
- times: every time column is only "set" or NULL;
- the directory each side ran in (artifact locations), and MLflow's random run names.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import textwrap

FASTFLOW = "import fastflow as mlflow"
MLFLOW = "import mlflow"
SIDES = {"fastflow": FASTFLOW, "mlflow": MLFLOW}

TIME_COLUMNS = {
    "creation_time",
    "last_update_time",
    "last_updated_time",
    "start_time",
    "end_time",
    "deleted_time",
    "timestamp",
    "metric_timestamp_ms",
    "creation_timestamp_ms",
    "last_updated_timestamp_ms",
}
# MLflow's generated run names ("kind-squid-967"): fastflow draws its own. Both draw the
# number from 0 to 1000 inclusive, so it can have four digits.
RANDOM_RUN_NAME = re.compile(r"^[a-z]+-[a-z]+-\d{1,4}$")


class Scenario:
    """One side's run: its directory, store path and what the script printed."""

    def __init__(self, root, db, stdout, stderr):
        self.root = root
        self.db = db
        self.stdout = stdout
        self.stderr = stderr
        self.returncode = None

    @property
    def uri(self):
        return f"sqlite:///{self.db}"

    def printed(self):
        """The JSON object the script printed on its last line."""
        return json.loads(self.stdout.strip().splitlines()[-1])


class Launched:
    """A script running in a fresh interpreter; ``result()`` waits for it once."""

    def __init__(self, root, db, process, side, name, timeout, expect_ok):
        self.root, self.db, self.process = root, db, process
        self.side, self.name, self.timeout, self.expect_ok = side, name, timeout, expect_ok
        self._done = None

    def result(self):
        if self._done is None:
            try:
                stdout, stderr = self.process.communicate(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                stdout, stderr = self.process.communicate()
                raise AssertionError(
                    f"{self.side} {self.name} timed out:\n{stderr[-6000:]}"
                ) from None
            if self.expect_ok:
                assert self.process.returncode == 0, (
                    f"{self.side} {self.name} failed:\n{stderr[-6000:]}"
                )
            self._done = Scenario(self.root, self.db, stdout, stderr)
            self._done.returncode = self.process.returncode
        return self._done


def launch(tmp_path, name, side, body, timeout=600, env=None, expect_ok=True):
    """Starts ``body`` (after the import line of ``side``, if any) as
    ``<tmp>/<name>-<side>/script.py``, run there with its own store,
    ``sqlite:///<dir>/store.db``, as the tracking URI and its own spool."""
    root = tmp_path / f"{name}-{side}"
    root.mkdir()
    db = root / "store.db"
    (root / "script.py").write_text(SIDES.get(side, "") + "\n" + textwrap.dedent(body))
    environ = dict(os.environ)
    for key in list(environ):
        if key.startswith("MLFLOW_"):
            del environ[key]
    environ.update(
        {
            "MLFLOW_TRACKING_URI": f"sqlite:///{db}",
            "FASTFLOW_SPOOL_DIR": str(root / "spool"),
            "PYTHONWARNINGS": "ignore",
        }
    )
    environ.update(env or {})
    process = subprocess.Popen(
        [sys.executable, "script.py"],
        cwd=root,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return Launched(root, db, process, side, name, timeout, expect_ok)


def run_both(tmp_path, name, body, **kwargs):
    """The scenario after each import line, both interpreters at once."""
    launched = {side: launch(tmp_path, name, side, body, **kwargs) for side in SIDES}
    return {side: run.result() for side, run in launched.items()}


def tables(db):
    with sqlite3.connect(db) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            )
        ]


def _rows(conn, table):
    cursor = conn.execute(f'SELECT * FROM "{table}"')
    columns = [d[0] for d in cursor.description]
    return columns, cursor.fetchall()


def _labels(conn):
    """Every id of the store mapped to a label that does not depend on the id."""
    labels = {}
    runs = conn.execute(
        "SELECT run_uuid FROM runs ORDER BY start_time, experiment_id, name"
    ).fetchall()
    for i, (run_id,) in enumerate(runs, 1):
        labels[run_id] = f"<run{i}>"
    models = conn.execute(
        "SELECT model_id, source_run_id, name FROM logged_models "
        "ORDER BY creation_timestamp_ms, name"
    ).fetchall()
    for i, (model_id, run_id, name) in enumerate(models, 1):
        labels[model_id] = f"<model{i}:{labels.get(run_id, run_id)}:{name}>"
    for dataset_uuid, name, digest in conn.execute(
        "SELECT dataset_uuid, name, digest FROM datasets"
    ):
        labels[dataset_uuid] = f"<dataset:{name}:{digest}>"
    for input_uuid, src_type, src, dst_type, dst in conn.execute(
        "SELECT input_uuid, source_type, source_id, destination_type, destination_id FROM inputs"
    ):
        labels[input_uuid] = (
            f"<input:{src_type}:{labels.get(src, src)}->{dst_type}:{labels.get(dst, dst)}>"
        )
    return labels


def _normalise_text(value, labels, root):
    # Longest ids first: an input label embeds run and model labels, never the other way.
    for raw in sorted(labels, key=len, reverse=True):
        if raw in value:
            value = value.replace(raw, labels[raw])
    value = value.replace(str(root), "<dir>")
    if RANDOM_RUN_NAME.match(value):
        value = "<random-name>"
    return value


def normalised(scenario):
    """{table: sorted rows}, ids, times and the run's directory normalised."""
    out = {}
    with sqlite3.connect(scenario.db) as conn:
        labels = _labels(conn)
        for table in tables(scenario.db):
            columns, rows = _rows(conn, table)
            normal = []
            for row in rows:
                cells = []
                for column, value in zip(columns, row):
                    if column in TIME_COLUMNS:
                        value = None if value is None else "<time>"
                    elif isinstance(value, str):
                        value = _normalise_text(value, labels, scenario.root)
                    cells.append(value)
                normal.append(tuple(cells))
            out[table] = (columns, sorted(normal, key=repr))
    return out


def differences(scenarios, only=None, skip=()):
    """Per table, the rows only one side has (empty when the stores agree)."""
    ours = normalised(scenarios["fastflow"])
    theirs = normalised(scenarios["mlflow"])
    assert sorted(ours) == sorted(theirs), "the two stores have different tables"
    diff = {}
    for table in sorted(ours):
        if (only is not None and table not in only) or table in skip:
            continue
        columns, mine = ours[table]
        _, oracle = theirs[table]
        if mine != oracle:
            diff[table] = {
                "columns": columns,
                "fastflow only": [r for r in mine if r not in oracle],
                "mlflow only": [r for r in oracle if r not in mine],
                "counts": (len(mine), len(oracle)),
            }
    return diff


def rows(scenario, sql, params=()):
    with sqlite3.connect(scenario.db) as conn:
        return conn.execute(sql, params).fetchall()
