"""A store fastflow creates has the schema of one MLflow 3.17.2 creates, clause by clause."""

import re
import sqlite3

import fastflow


def _split_top_level(body):
    clauses, depth, current = [], 0, []
    for ch in body:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            clauses.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    clauses.append("".join(current).strip())
    return clauses


def _schema(path):
    """Per object: tables as (head, set of clauses), indexes as their exact SQL."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL"
        ).fetchall()
    objects = {}
    for kind, name, table, sql in rows:
        if kind == "table":
            head, _, rest = sql.partition("(")
            body = rest[: rest.rindex(")")]
            # MLflow varies the order of constraint clauses between creations: compare sets.
            objects[("table", name)] = (head.strip(), frozenset(_split_top_level(body)))
        else:
            objects[(kind, name)] = (table, re.sub(r"\s+", " ", sql))
    return objects


def test_schema_equals_mlflow(tmp_path, mlflow):
    ours = tmp_path / "fastflow.db"
    theirs = tmp_path / "mlflow.db"
    fastflow.MlflowClient(f"sqlite:///{ours}")
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{theirs}").search_experiments()

    our_schema, their_schema = _schema(ours), _schema(theirs)
    assert sorted(our_schema) == sorted(their_schema)
    for key in their_schema:
        assert our_schema[key] == their_schema[key], key
    assert sum(1 for kind, _ in our_schema if kind == "table") == 65

    def rows(path, sql):
        with sqlite3.connect(path) as conn:
            return conn.execute(sql).fetchall()

    for sql in (
        "SELECT version_num FROM alembic_version",
        "SELECT * FROM workspaces",
        "SELECT experiment_id, name, lifecycle_stage, workspace FROM experiments",
    ):
        assert rows(ours, sql) == rows(theirs, sql), sql
    assert rows(ours, "SELECT artifact_location FROM experiments") == [
        (str(tmp_path / "mlruns" / "0"),)
    ]


def test_concurrent_creation_from_processes(tmp_path):
    """Several processes opening a missing store at once: one creates it, all use it."""
    import subprocess
    import sys

    uri = f"sqlite:///{tmp_path / 'race.db'}"
    script = (
        "import fastflow, sys\n"
        f"fastflow.set_tracking_uri({uri!r})\n"
        "with fastflow.start_run():\n"
        "    fastflow.log_metric('m', 1.0)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(6)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 6
    with sqlite3.connect(tmp_path / "race.db") as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (6,)
        assert conn.execute("SELECT count(*) FROM experiments").fetchone() == (1,)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
