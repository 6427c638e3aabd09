"""Opening a store: the same script runs under MLflow 3.17.2 and under fastflow, each in a
fresh interpreter, and what each does (or raises) is compared."""

import json
import shutil
import sqlite3
import subprocess

import pytest
from conftest import run_python, sqlite_rows

# Each step's outcome: ["ok", value] or [exception class, error code, message].
_PRELUDE = """
import json, sys
{imp}
uri, out = sys.argv[1], sys.argv[2]
res = {{}}

def outcome(name, f):
    try:
        res[name] = ["ok", f()]
    except Exception as e:
        res[name] = [type(e).__name__, getattr(e, "error_code", None), str(e)]
"""

_OPEN = """
def run():
    with mlflow.start_run():
        mlflow.log_metric("m", 1.0)
    return "logged"

outcome("set_tracking_uri", lambda: mlflow.set_tracking_uri(uri))
outcome("start_run", run)
outcome("client", lambda: len(mlflow.MlflowClient(tracking_uri=uri).search_experiments()))
json.dump(res, open(out, "w"))
"""

_READ_AND_WRITE = """
try:
    client = mlflow.MlflowClient(tracking_uri=uri)
    run_id = client.search_runs(["0"])[0].info.run_id
except Exception as e:
    res["open"] = [type(e).__name__, getattr(e, "error_code", None), str(e)]
    json.dump(res, open(out, "w"))
    sys.exit(0)
outcome("experiments", lambda: sorted(e.name for e in client.search_experiments()))
outcome("runs", lambda: sorted(r.info.run_id for r in client.search_runs(["0"])))
outcome("get_run", lambda: [getattr(client.get_run(run_id).data, a) for a in ("metrics", "params")])
outcome("history", lambda: [[m.step, m.value] for m in client.get_metric_history(run_id, "m")])
mlflow.set_tracking_uri(uri)
outcome("fluent_search", lambda: sorted(mlflow.search_runs(search_all_experiments=True).run_id))
outcome("set_tag", lambda: client.set_tag(run_id, "t", "v"))
outcome("log_metric", lambda: client.log_metric(run_id, "m", 5.0, step=9, synchronous=True))
outcome("create_experiment", lambda: client.create_experiment("new"))
outcome("start_run", lambda: mlflow.start_run())
json.dump(res, open(out, "w"))
"""

_WRITE_STORE = """
import os, sys
{imp}
mlflow.set_tracking_uri(sys.argv[1])
with mlflow.start_run() as run:
    mlflow.log_param("p", "1")
    for step in range(3):
        mlflow.log_metric("m", step * 1.5, step=step)
print(run.info.run_id, flush=True)
if len(sys.argv) > 2:
    # Gone without its exit hooks, as a killed process goes: its WAL stays beside the file.
    os._exit(0)
"""

_IMPORTS = {"mlflow": "import mlflow", "fastflow": "import fastflow as mlflow"}


def _outcomes(tmp_path, which, body, uri):
    out = tmp_path / f"{which}.json"
    run_python(_PRELUDE.format(imp=_IMPORTS[which]) + body, uri, out)
    return json.loads(out.read_text())


def _write_store(which, path, *killed):
    """A store with one run, written by MLflow or by fastflow in a process of its own."""
    return run_python(_WRITE_STORE.format(imp=_IMPORTS[which]), f"sqlite:///{path}", *killed)[-1]


def test_missing_directories_are_created(tmp_path):
    outcomes = {}
    for which in _IMPORTS:
        db = tmp_path / which / "deeper" / "still" / "mlflow.db"
        outcomes[which] = _outcomes(tmp_path, which, _OPEN, f"sqlite:///{db}")
        assert db.is_file()
        runs = sqlite_rows(db, "SELECT status FROM runs")
        assert runs == [("FINISHED",)]
    assert outcomes["fastflow"] == outcomes["mlflow"]
    assert outcomes["mlflow"]["start_run"] == ["ok", "logged"]


def test_a_file_in_the_way_raises_the_same_os_error(tmp_path):
    (tmp_path / "blocker").write_text("")
    uri = f"sqlite:///{tmp_path / 'blocker' / 'sub' / 'mlflow.db'}"
    mlflow = _outcomes(tmp_path, "mlflow", _OPEN, uri)
    fastflow = _outcomes(tmp_path, "fastflow", _OPEN, uri)
    assert fastflow == mlflow
    assert mlflow["start_run"] == [
        "NotADirectoryError",
        None,
        f"[Errno 20] Not a directory: '{tmp_path / 'blocker' / 'sub'}'",
    ]


@pytest.mark.parametrize("revision", ["abc123", "75868b020152", None])
def test_another_schema_revision_is_refused_as_mlflow_refuses_it(tmp_path, revision):
    """`75868b020152` is the revision before MLflow 3.17.2's head; with every table in
    place MLflow refuses it rather than migrating. None: no revision recorded."""
    _write_store("mlflow", tmp_path / "made.db")
    with sqlite3.connect(tmp_path / "made.db") as conn:
        if revision is None:
            conn.execute("DELETE FROM alembic_version")
        else:
            conn.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    outcomes = {}
    for which in _IMPORTS:
        db = tmp_path / f"{which}.db"
        shutil.copy(tmp_path / "made.db", db)
        outcomes[which] = _outcomes(tmp_path, which, _OPEN, f"sqlite:///{db}")
        assert sqlite_rows(db, "SELECT count(*) FROM runs") == [(1,)]
    assert outcomes["fastflow"] == outcomes["mlflow"]
    name, code, message = outcomes["mlflow"]["start_run"]
    assert (name, code) == ("MlflowException", "INTERNAL_ERROR")
    assert message.startswith(
        f"Detected out-of-date database schema (found version {revision}, "
        "but expected dc11669786a5). Take a backup of your database, then run "
        "'mlflow db upgrade <database_uri>'"
    )
    assert outcomes["mlflow"]["set_tracking_uri"] == ["ok", None]


@pytest.fixture
def read_only_mount(tmp_path):
    """A directory whose contents are shown read-only at another path by a bind mount:
    writes through the mount fail with EROFS, as on read-only media."""
    source = tmp_path / "source"
    target = tmp_path / "readonly"
    source.mkdir()
    target.mkdir()
    try:
        subprocess.run(["mount", "--bind", source, target], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.fail(f"a read-only bind mount is needed (root): {e}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", target], check=True, capture_output=True)
        yield source, target
    finally:
        subprocess.run(["umount", target], check=True)


def _read_only_outcomes(tmp_path, target, name):
    uri = f"sqlite:///{target / name}"
    return {which: _outcomes(tmp_path, which, _READ_AND_WRITE, uri) for which in _IMPORTS}


_READS = ("experiments", "runs", "get_run", "history", "fluent_search")
_WRITES = ("set_tag", "log_metric", "create_experiment", "start_run")


def _assert_writes_refused(outcomes):
    for step in _WRITES:
        name, code, message = outcomes[step]
        assert (name, code) == ("MlflowException", "TEMPORARILY_UNAVAILABLE"), step
        assert "(sqlite3.OperationalError) attempt to write a readonly database" in message


def test_a_store_mlflow_wrote_is_read_on_read_only_media(tmp_path, read_only_mount):
    source, target = read_only_mount
    run_id = _write_store("mlflow", source / "mlflow.db")
    outcomes = _read_only_outcomes(tmp_path, target, "mlflow.db")
    for step in _READS:
        assert outcomes["fastflow"][step] == outcomes["mlflow"][step], step
    assert outcomes["mlflow"]["runs"] == ["ok", [run_id]]
    assert outcomes["mlflow"]["history"] == ["ok", [[0, 0.0], [1, 1.5], [2, 3.0]]]
    for which in _IMPORTS:
        _assert_writes_refused(outcomes[which])
        assert not any(p.name.startswith("mlflow.db-") for p in source.iterdir())


@pytest.mark.parametrize("wal_files", ["none", "kept", "removed"])
def test_a_store_fastflow_wrote_is_read_on_read_only_media(tmp_path, read_only_mount, wal_files):
    """fastflow's stores are in WAL mode while it runs. `none`: a clean exit left one
    self-contained file, as MLflow does; `kept`: the -wal and -shm files of a process that
    was killed; `removed`: a later close folded and removed them, and SQLite cannot create
    the -shm file a WAL reader needs on read-only media, which MLflow does not get past."""
    source, target = read_only_mount
    killed = () if wal_files == "none" else ("killed",)
    run_id = _write_store("fastflow", source / "mlflow.db", *killed)
    if wal_files == "none":
        assert not any(p.name.startswith("mlflow.db-") for p in source.iterdir())
    if wal_files == "removed":
        # The last connection to close folds the WAL into the file and removes both.
        conn = sqlite3.connect(source / "mlflow.db")
        conn.execute("SELECT count(*) FROM runs").fetchall()
        conn.close()
        assert not (source / "mlflow.db-wal").exists()
    outcomes = _read_only_outcomes(tmp_path, target, "mlflow.db")
    fastflow = outcomes["fastflow"]
    assert fastflow["runs"] == ["ok", [run_id]]
    assert fastflow["get_run"] == ["ok", [{"m": 3.0}, {"p": "1"}]]
    assert fastflow["history"] == ["ok", [[0, 0.0], [1, 1.5], [2, 3.0]]]
    assert fastflow["experiments"] == ["ok", ["Default"]]
    assert fastflow["fluent_search"] == ["ok", [run_id]]
    _assert_writes_refused(fastflow)
    if wal_files in ("none", "kept"):
        for step in _READS:
            assert fastflow[step] == outcomes["mlflow"][step], step
        _assert_writes_refused(outcomes["mlflow"])
    else:
        assert "unable to open database file" in outcomes["mlflow"]["open"][2]
