"""One fluent state for fastflow and MLflow in one interpreter (``import fastflow`` and the
real ``import mlflow`` side by side): runs started by one library and ended by the other,
nesting both ways, experiment and tracking URI set by either, threads isolated, a forked
child, exit with open runs (against the same script under MLflow alone), and the orders in
which the two libraries can enter the process."""

import json
import subprocess
import sys
import threading

import bridge_compare as bc
import fastflow
import pytest
from conftest import sqlite_rows

# ---- scripts, each in a fresh interpreter (started together, waited for by each test) ------

# A parent (fastflow's) and a nested child (MLflow's) left open, a thread's run left open,
# and points logged in a loop without a flush, half through each library. MLflow alone
# ends only the innermost run of the main thread at exit.
EXIT_WITH_OPEN_RUNS = """
import json
import os
import threading

points = int(os.environ["POINTS"])
mlflow.set_experiment("exit")
parent = fastflow.start_run(run_name="parent")
child = mlflow.start_run(run_name="child", nested=True)
ids = {"parent": parent.info.run_id, "child": child.info.run_id}


def worker():
    run = mlflow.start_run(run_name="thread")
    ids["thread"] = run.info.run_id
    mlflow.log_metric("t", 1.0)


thread = threading.Thread(target=worker)
thread.start()
thread.join()
for i in range(points // 2):
    fastflow.log_metric("a", float(i), step=i)
    mlflow.log_metric("b", float(i), step=i)
print(json.dumps(ids))
"""
BOTH = "import fastflow\nimport mlflow\n"
MLFLOW_ALONE = "import mlflow\nfastflow = mlflow\n"
EXIT_POINTS = 10_000
# MLflow alone writes a point in milliseconds: the oracle is only asked for statuses.
ORACLE_POINTS = 100

FORK = """
import json
import os

import fastflow
import mlflow

mlflow.set_experiment("fork")
parent = fastflow.start_run(run_name="parent")
fastflow.log_metric("p", 1.0)
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(read_end)
    seen = {
        "fastflow_active": fastflow.active_run() is not None,
        "mlflow_active": mlflow.active_run() is not None,
    }
    with mlflow.start_run(run_name="child-by-mlflow") as by_mlflow:
        mlflow.log_metric("c", 2.0)
        fastflow.log_metric("c", 3.0, step=1)
        seen["fastflow_sees_it"] = fastflow.active_run().info.run_id == by_mlflow.info.run_id
    with fastflow.start_run(run_name="child-by-fastflow") as by_fastflow:
        mlflow.log_param("x", "1")
        seen["mlflow_sees_it"] = mlflow.active_run().info.run_id == by_fastflow.info.run_id
    seen["children"] = [by_mlflow.info.run_id, by_fastflow.info.run_id]
    os.write(write_end, json.dumps(seen).encode())
    os._exit(0)
os.close(write_end)
data = b""
while True:
    chunk = os.read(read_end, 65536)
    if not chunk:
        break
    data += chunk
_, status = os.waitpid(pid, 0)
seen = json.loads(data) if data else {}
seen["child_status"] = status
seen["parent_still_active"] = mlflow.active_run().info.run_id == parent.info.run_id
fastflow.log_metric("p", 2.0, step=1)
fastflow.end_run()
seen["parent"] = parent.info.run_id
print(json.dumps(seen))
"""

# fastflow first; MLflow imported later (as a library importing it would).
FASTFLOW_FIRST = """
import json
import sys

import fastflow

seen = {"mlflow_loaded_by_fastflow": "mlflow" in sys.modules}
fastflow.set_experiment("first")
import mlflow

with fastflow.start_run(run_name="outer") as outer:
    seen["mlflow_sees_outer"] = mlflow.active_run().info.run_id == outer.info.run_id
    with mlflow.start_run(run_name="inner", nested=True) as inner:
        seen["fastflow_sees_inner"] = fastflow.active_run().info.run_id == inner.info.run_id
        mlflow.log_metric("m", 1.0)
    seen["inner_parent"] = mlflow.get_run(inner.info.run_id).data.tags.get("mlflow.parentRunId")
seen["outer"] = outer.info.run_id
seen["experiment"] = mlflow.get_experiment(inner.info.experiment_id).name
seen["last"] = mlflow.last_active_run().info.run_id
print(json.dumps(seen))
"""

# MLflow first, with a store, an experiment and a run chosen before fastflow is imported.
MLFLOW_FIRST = """
import json
import os

import mlflow

early_uri = "sqlite:///" + os.path.abspath("early.db")
mlflow.set_tracking_uri(early_uri)
mlflow.set_experiment("early")
early = mlflow.start_run(run_name="early")
import fastflow

seen = {"early": early.info.run_id}
seen["fastflow_uri"] = fastflow.get_tracking_uri() == early_uri
top = fastflow.active_run()
seen["fastflow_sees_early"] = top is not None and top.info.run_id == early.info.run_id
top = mlflow.active_run()
seen["mlflow_still_sees_early"] = top is not None and top.info.run_id == early.info.run_id
mlflow.end_run()
while fastflow.active_run() is not None:
    fastflow.end_run()
with fastflow.start_run(run_name="later") as later:
    seen["mlflow_sees_later"] = mlflow.active_run().info.run_id == later.info.run_id
    mlflow.log_metric("m", 1.0)
seen["later"] = later.info.run_id
seen["later_experiment"] = mlflow.get_experiment(later.info.experiment_id).name
print(json.dumps(seen))
"""

# No bridge yet: MLflow enters through a name only MLflow has, with a fastflow run active.
LAZY = """
import json
import sys

import fastflow

seen = {"mlflow_loaded_by_fastflow": "mlflow" in sys.modules}
with fastflow.start_run(run_name="lazy") as run:
    fastflow.log_metric("before", 1.0)
    seen["mlflow_loaded_by_logging"] = "mlflow" in sys.modules
    flavor = fastflow.sklearn
    import mlflow

    seen["same_flavor"] = flavor is mlflow.sklearn
    top = mlflow.active_run()
    seen["mlflow_sees_run"] = top is not None and top.info.run_id == run.info.run_id
    mlflow.log_metric("after", 2.0)
seen["run"] = run.info.run_id
print(json.dumps(seen))
"""

# Real MLflow alone (fastflow never imported) reading a store afterwards.
READ_EXIT = """
import json, sys
from mlflow import MlflowClient

out = {"fastflow_imported": "fastflow" in sys.modules, "stores": []}
for uri, ids in json.loads(sys.argv[1]):
    client = MlflowClient(uri)
    store = {"status": {}, "history": {}}
    for name, run_id in ids.items():
        store["status"][name] = client.get_run(run_id).info.status
    for key in ("a", "b"):
        history = client.get_metric_history(ids["child"], key)
        store["history"][key] = sorted([m.step, m.value] for m in history)
    store["history"]["t"] = len(client.get_metric_history(ids["thread"], "t"))
    out["stores"].append(store)
print(json.dumps(out))
"""


@pytest.fixture(scope="module", autouse=True)
def scripts(tmp_path_factory):
    """Every script of this file, started together (each waits on its own result)."""
    tmp = tmp_path_factory.mktemp("bridge-state")
    started = {
        "exit": bc.launch(
            tmp, "exit", "both", BOTH + EXIT_WITH_OPEN_RUNS, env={"POINTS": str(EXIT_POINTS)}
        ),
        "exit-oracle": bc.launch(
            tmp,
            "exit",
            "mlflow-alone",
            MLFLOW_ALONE + EXIT_WITH_OPEN_RUNS,
            env={"POINTS": str(ORACLE_POINTS)},
        ),
        "fork": bc.launch(tmp, "fork", "both", FORK),
        "fastflow-first": bc.launch(tmp, "order", "fastflow-first", FASTFLOW_FIRST),
        "mlflow-first": bc.launch(tmp, "order", "mlflow-first", MLFLOW_FIRST),
        "lazy": bc.launch(tmp, "lazy", "fastflow-only", LAZY),
    }
    yield started
    for launched in started.values():
        if launched.process.poll() is None:
            launched.process.kill()
            launched.process.communicate()


def read_exit(*scenarios):
    """What real MLflow alone (fastflow never imported) reads from each store."""
    request = [[scenario.uri, scenario.printed()] for scenario in scenarios]
    done = subprocess.run(
        [sys.executable, "-c", READ_EXIT, json.dumps(request)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert not out["fastflow_imported"]
    return out["stores"]


# ---- in this interpreter -------------------------------------------------------------------


@pytest.fixture(autouse=True)
def mlflow_state_reset(mlflow_bridge):
    """MLflow's own module state goes back to nothing after each test, as fastflow's does."""
    mlflow = mlflow_bridge
    yield
    import mlflow.tracking._tracking_service.utils as uri_state
    import mlflow.tracking.fluent as mlflow_fluent

    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow_fluent._active_experiment_id = None
    uri_state._tracking_uri = None


def status_of(db, run_id):
    fastflow.flush()
    return sqlite_rows(db, "SELECT status FROM runs WHERE run_uuid = ?", (run_id,))[0][0]


def tags_of(db, run_id):
    fastflow.flush()
    return dict(sqlite_rows(db, "SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,)))


def no_runs(db):
    if not db.exists():
        return True
    fastflow.flush()
    return sqlite_rows(db, "SELECT count(*) FROM runs") == [(0,)]


@pytest.fixture
def db(db_uri, tmp_path):
    return tmp_path / "fastflow.db"


def test_run_started_by_fastflow_is_mlflows_and_ended_by_mlflow(db, mlflow):
    run = fastflow.start_run(run_name="by-fastflow")
    assert mlflow.active_run().info.run_id == run.info.run_id
    mlflow.log_metric("m", 1.0)
    mlflow.end_run()
    assert fastflow.active_run() is None and mlflow.active_run() is None
    assert status_of(db, run.info.run_id) == "FINISHED"
    assert mlflow.last_active_run().info.run_id == run.info.run_id
    assert fastflow.last_active_run().info.run_id == run.info.run_id
    assert sqlite_rows(db, "SELECT key, value FROM metrics") == [("m", 1.0)]


def test_run_started_by_mlflow_is_fastflows_and_ended_by_fastflow(db, mlflow):
    run = mlflow.start_run(run_name="by-mlflow")
    assert fastflow.active_run().info.run_id == run.info.run_id
    fastflow.log_metric("f", 2.0)
    fastflow.end_run("KILLED")
    assert fastflow.active_run() is None and mlflow.active_run() is None
    assert status_of(db, run.info.run_id) == "KILLED"
    assert mlflow.last_active_run().info.run_id == run.info.run_id
    assert fastflow.last_active_run().info.run_id == run.info.run_id
    assert sqlite_rows(db, "SELECT key, value FROM metrics") == [("f", 2.0)]


def test_nesting_both_ways(db, mlflow):
    outer = fastflow.start_run(run_name="outer")
    middle = mlflow.start_run(run_name="middle", nested=True)
    inner = fastflow.start_run(run_name="inner", nested=True)
    assert mlflow.active_run().info.run_id == inner.info.run_id
    assert tags_of(db, middle.info.run_id)["mlflow.parentRunId"] == outer.info.run_id
    assert tags_of(db, inner.info.run_id)["mlflow.parentRunId"] == middle.info.run_id
    assert "mlflow.parentRunId" not in tags_of(db, outer.info.run_id)
    mlflow.end_run()
    assert fastflow.active_run().info.run_id == middle.info.run_id
    fastflow.end_run()
    assert mlflow.active_run().info.run_id == outer.info.run_id
    mlflow.end_run()
    assert fastflow.active_run() is None
    for run in (outer, middle, inner):
        assert status_of(db, run.info.run_id) == "FINISHED"


def test_with_blocks_of_both_libraries_end_their_runs_failed_on_an_exception(db, mlflow):
    with pytest.raises(ValueError):
        with mlflow.start_run(run_name="outer") as outer:
            with fastflow.start_run(run_name="inner", nested=True) as inner:
                assert mlflow.active_run().info.run_id == inner.info.run_id
                raise ValueError("boom")
    assert fastflow.active_run() is None and mlflow.active_run() is None
    assert status_of(db, inner.info.run_id) == "FAILED"
    assert status_of(db, outer.info.run_id) == "FAILED"
    assert tags_of(db, inner.info.run_id)["mlflow.parentRunId"] == outer.info.run_id


def test_set_experiment_by_either_is_the_others(db, mlflow):
    fastflow.set_experiment("chosen-by-fastflow")
    with mlflow.start_run() as run:
        pass
    assert mlflow.get_experiment(run.info.experiment_id).name == "chosen-by-fastflow"
    mlflow.set_experiment("chosen-by-mlflow")
    with fastflow.start_run() as run:
        pass
    assert fastflow.get_experiment(run.info.experiment_id).name == "chosen-by-mlflow"
    fastflow.flush()
    assert sqlite_rows(
        db,
        "SELECT e.name FROM runs r JOIN experiments e USING (experiment_id) ORDER BY e.name",
    ) == [("chosen-by-fastflow",), ("chosen-by-mlflow",)]


def test_set_tracking_uri_by_either_is_the_others(db, tmp_path, mlflow):
    second = f"sqlite:///{tmp_path / 'second.db'}"
    mlflow.set_tracking_uri(second)
    assert fastflow.get_tracking_uri() == second
    with fastflow.start_run(run_name="in-second") as run:
        fastflow.log_metric("x", 1.0)
    fastflow.flush()
    assert sqlite_rows(tmp_path / "second.db", "SELECT name FROM runs") == [("in-second",)]
    assert mlflow.get_run(run.info.run_id).data.metrics == {"x": 1.0}

    third = f"sqlite:///{tmp_path / 'third.db'}"
    fastflow.set_tracking_uri(third)
    assert mlflow.get_tracking_uri() == third
    with mlflow.start_run(run_name="in-third") as run:
        mlflow.log_metric("y", 2.0)
    assert sqlite_rows(tmp_path / "third.db", "SELECT name FROM runs") == [("in-third",)]
    assert mlflow.MlflowClient().get_run(run.info.run_id).data.metrics == {"y": 2.0}
    assert no_runs(db)


def test_points_fastflow_queued_are_visible_to_mlflows_reads(db, mlflow):
    """MLflow's store sees every point queued by either library before it reads."""
    with fastflow.start_run() as run:
        for step in range(1000):
            fastflow.log_metric("f", float(step), step=step)
            mlflow.log_metric("m", float(step), step=step)
        client = mlflow.MlflowClient()
        for key in ("f", "m"):
            history = client.get_metric_history(run.info.run_id, key)
            assert sorted((p.step, p.value) for p in history) == [
                (step, float(step)) for step in range(1000)
            ]
        assert mlflow.get_run(run.info.run_id).data.metrics == {"f": 999.0, "m": 999.0}


def test_mlflows_callers_get_mlflows_error_codes(db, mlflow):
    """What fastflow's writer refuses reaches MLflow's callers as MLflow's own exception with
    MLflow's error code (codes and HTTP statuses as MLflow 3.17.2 alone gives them)."""
    from mlflow.exceptions import MlflowException as MlflowError

    client = mlflow.MlflowClient()
    gone = client.create_experiment("gone")
    client.delete_experiment(gone)
    with pytest.raises(MlflowError) as deleted:
        client.create_run(gone)
    assert deleted.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowError) as missing:
        client.create_run("424242")
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert missing.value.get_http_status_code() == 404
    with mlflow.start_run():
        mlflow.log_param("p", 1)
        with pytest.raises(MlflowError) as changed:
            mlflow.log_param("p", 2)
    assert changed.value.error_code == "INVALID_PARAMETER_VALUE"
    assert changed.value.get_http_status_code() == 400


def _in_thread(function):
    out = {}

    def target():
        try:
            out["value"] = function()
        except BaseException as e:  # reported to the test's thread
            out["error"] = e

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(60)
    if "error" in out:
        raise out["error"]
    return out["value"]


@pytest.mark.parametrize("main_starts", ["fastflow", "mlflow"])
def test_threads_are_isolated_in_both_libraries(db, mlflow, main_starts):
    libraries = {"fastflow": fastflow, "mlflow": mlflow}
    other = "mlflow" if main_starts == "fastflow" else "fastflow"
    main_run = libraries[main_starts].start_run(run_name="main")

    def in_thread():
        seen = {
            "fastflow": fastflow.active_run(),
            "mlflow": mlflow.active_run(),
        }
        run = libraries[other].start_run(run_name="thread")
        seen["thread_run"] = run.info.run_id
        fastflow.log_metric("by_fastflow", 1.0)
        mlflow.log_metric("by_mlflow", 2.0)
        seen["fastflow_sees_own"] = fastflow.active_run().info.run_id
        seen["mlflow_sees_own"] = mlflow.active_run().info.run_id
        libraries[main_starts].end_run()
        seen["left"] = (fastflow.active_run(), mlflow.active_run())
        return seen

    seen = _in_thread(in_thread)
    assert seen["fastflow"] is None and seen["mlflow"] is None
    assert seen["fastflow_sees_own"] == seen["mlflow_sees_own"] == seen["thread_run"]
    assert seen["left"] == (None, None)
    assert fastflow.active_run().info.run_id == main_run.info.run_id
    assert mlflow.active_run().info.run_id == main_run.info.run_id
    assert "mlflow.parentRunId" not in tags_of(db, seen["thread_run"])
    assert sorted(sqlite_rows(db, "SELECT run_uuid, key FROM metrics")) == [
        (seen["thread_run"], "by_fastflow"),
        (seen["thread_run"], "by_mlflow"),
    ]
    assert status_of(db, seen["thread_run"]) == "FINISHED"
    assert status_of(db, main_run.info.run_id) == "RUNNING"
    libraries[other].end_run()
    assert status_of(db, main_run.info.run_id) == "FINISHED"


# ---- fresh interpreters --------------------------------------------------------------------


def test_forked_child_sees_no_run_and_logs_its_own(scripts):
    scenario = scripts["fork"].result()
    seen = scenario.printed()
    assert seen["child_status"] == 0
    assert not seen["fastflow_active"], "a forked child inherited fastflow's active run"
    assert not seen["mlflow_active"], "a forked child inherited MLflow's active run"
    assert seen["fastflow_sees_it"] and seen["mlflow_sees_it"]
    assert seen["parent_still_active"]
    by_mlflow, by_fastflow = seen["children"]
    runs = dict(bc.rows(scenario, "SELECT run_uuid, status FROM runs"))
    assert runs == {seen["parent"]: "FINISHED", by_mlflow: "FINISHED", by_fastflow: "FINISHED"}
    parents = bc.rows(scenario, "SELECT run_uuid FROM tags WHERE key = 'mlflow.parentRunId'")
    assert parents == []
    assert sorted(bc.rows(scenario, "SELECT run_uuid, key, step, value FROM metrics")) == sorted(
        [
            (seen["parent"], "p", 0, 1.0),
            (seen["parent"], "p", 1, 2.0),
            (by_mlflow, "c", 0, 2.0),
            (by_mlflow, "c", 1, 3.0),
        ]
    )
    assert bc.rows(scenario, "SELECT run_uuid, key, value FROM params") == [(by_fastflow, "x", "1")]


def test_exit_with_open_runs_ends_them_as_mlflow_does_with_every_point(scripts):
    mine, oracle = read_exit(scripts["exit"].result(), scripts["exit-oracle"].result())
    # MLflow alone: only the innermost run of the main thread ends at exit.
    assert oracle["status"] == {"parent": "RUNNING", "child": "FINISHED", "thread": "RUNNING"}
    assert mine["status"] == oracle["status"]
    every = [[i, float(i)] for i in range(EXIT_POINTS // 2)]
    assert mine["history"]["a"] == every
    assert mine["history"]["b"] == every
    assert mine["history"]["t"] == 1


def test_exit_leaves_no_spool_behind(scripts):
    scenario = scripts["exit"].result()
    assert "fastflow" not in scenario.stderr, scenario.stderr[-2000:]
    spool = scenario.root / "spool"
    assert not spool.exists() or not list(spool.rglob("*.spool"))


def test_fastflow_first_then_mlflow_share_one_state(scripts):
    seen = scripts["fastflow-first"].result().printed()
    assert not seen["mlflow_loaded_by_fastflow"]
    assert seen["mlflow_sees_outer"] and seen["fastflow_sees_inner"]
    assert seen["inner_parent"] == seen["outer"]
    assert seen["experiment"] == "first"
    assert seen["last"] == seen["outer"]


def test_mlflow_first_then_fastflow_adopts_its_store_and_experiment(scripts):
    scenario = scripts["mlflow-first"].result()
    seen = scenario.printed()
    assert seen["fastflow_uri"]
    assert seen["mlflow_sees_later"]
    assert seen["later_experiment"] == "early"
    early_db = scenario.root / "early.db"
    assert sqlite_rows(early_db, "SELECT name FROM runs WHERE run_uuid = ?", (seen["later"],))
    assert no_runs(scenario.db)


def test_run_mlflow_started_before_fastflow_was_imported_stays_active(scripts):
    """``import mlflow; mlflow.start_run()`` and only then ``import fastflow`` (a library
    importing it): the run stays the active run of both, and ends once, when ended."""
    scenario = scripts["mlflow-first"].result()
    seen = scenario.printed()
    assert seen["mlflow_still_sees_early"], "installing the bridge dropped MLflow's active run"
    assert seen["fastflow_sees_early"]
    status = sqlite_rows(
        scenario.root / "early.db", "SELECT status FROM runs WHERE run_uuid = ?", (seen["early"],)
    )
    assert status == [("FINISHED",)]


def test_first_name_only_mlflow_has_installs_the_bridge(scripts):
    scenario = scripts["lazy"].result()
    seen = scenario.printed()
    assert not seen["mlflow_loaded_by_fastflow"]
    assert not seen["mlflow_loaded_by_logging"]
    assert seen["same_flavor"]
    assert seen["mlflow_sees_run"]
    assert sorted(
        bc.rows(scenario, "SELECT key, value FROM metrics WHERE run_uuid = ?", (seen["run"],))
    ) == [("after", 2.0), ("before", 1.0)]
    assert bc.rows(scenario, "SELECT status FROM runs") == [("FINISHED",)]
