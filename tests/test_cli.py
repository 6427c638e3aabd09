"""The ``fastflow`` console script, run as users run it: a subprocess on real stores written by
fastflow and by MLflow, its output read as text, JSON and CSV, its exit codes checked."""

import csv
import io
import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request

import fastflow
import mlflow
import pytest

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def script() -> str:
    """The console script pip installed beside this interpreter."""
    path = os.path.join(os.path.dirname(sys.executable), "fastflow")
    if not os.path.exists(path):
        path = shutil.which("fastflow")
    assert path, "the fastflow console script is not installed: pip install ."
    return path


def cli(*args, uri=None, env=None, timeout=120, cwd=None):
    environment = dict(os.environ)
    environment.pop("NO_COLOR", None)
    if uri is not None:
        environment["MLFLOW_TRACKING_URI"] = uri
    environment.update(env or {})
    return subprocess.run(
        [script(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        cwd=cwd,
    )


def on_a_terminal(*args, uri, env=None, timeout=120):
    """Runs the script with a pseudo-terminal as its stdout; returns (exit code, output)."""
    environment = dict(os.environ, MLFLOW_TRACKING_URI=uri, COLUMNS="80")
    environment.pop("NO_COLOR", None)
    environment.update(env or {})
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [script(), *args], stdout=follower, stderr=subprocess.PIPE, env=environment
    )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    os.close(leader)
    return process.wait(timeout=10), b"".join(chunks).decode()


@pytest.fixture
def fastflow_store(tmp_path):
    """A store fastflow wrote: a parent run with two children, params, metric histories, a
    tag and an artifact, and a second experiment."""
    uri = f"sqlite:///{tmp_path / 'ff.db'}"
    fastflow.set_tracking_uri(uri)
    fastflow.set_experiment("sweep")
    with fastflow.start_run(run_name="parent") as parent:
        fastflow.log_param("model", "mlp")
        fastflow.set_tag("team", "vision")
        children = []
        for lr in (0.1, 0.01):
            with fastflow.start_run(run_name=f"lr-{lr}", nested=True) as child:
                fastflow.log_param("lr", lr)
                for step in range(500):
                    fastflow.log_metric("loss", (1 + step % 7) / (1 + step), step=step)
                fastflow.log_metric("loss", -3.0, step=500)  # the global min, mid-series
                fastflow.log_metric("loss", 0.25, step=501)
                children.append(child.info.run_id)
        (tmp_path / "notes.txt").write_text("hello")
        fastflow.log_artifact(str(tmp_path / "notes.txt"))
    fastflow.set_experiment("other")
    with fastflow.start_run(run_name="lonely"):
        fastflow.log_metric("acc", 0.5)
    fastflow.flush()
    return uri, parent.info.run_id, children


def test_help_and_usage_errors():
    done = cli("--help")
    assert done.returncode == 0
    for command in ("runs", "experiments", "ui", "doctor", "sync", "demo"):
        assert command in done.stdout
    for args in (["runs", "ls"], ["runs", "show"], ["experiments", "ls"], ["ui"], ["doctor"]):
        shown = cli(*args, "--help")
        assert shown.returncode == 0, args
        assert shown.stdout.startswith(f"usage: fastflow {' '.join(args)}"), shown.stdout
    for args in ([], ["nope"], ["runs"], ["runs", "ls", "--max", "x"]):
        wrong = cli(*args)
        assert wrong.returncode == 2, (args, wrong.stderr)
        assert "usage:" in wrong.stderr
    module = subprocess.run(
        [sys.executable, "-m", "fastflow", "--help"], capture_output=True, text=True
    )
    assert module.returncode == 0 and module.stdout == done.stdout


def test_runs_ls_shows_children_under_their_parent_in_80_columns(fastflow_store):
    uri, parent, children = fastflow_store
    done = cli("runs", "ls", "--experiment", "sweep", uri=uri)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), done.stdout
    assert not ANSI.search(done.stdout), "colours off a terminal"
    assert lines[0].split()[:4] == ["Run", "Status", "Start", "Duration"]
    rows = lines[1:]
    assert len(rows) == 3
    assert rows[0].startswith("parent")
    assert all(re.match(r"\s+└ lr-0\.0?1\s", row) for row in rows[1:]), rows
    assert all("FINISHED" in row for row in rows)
    assert "loss" in lines[0] and "lr" in lines[0]


def test_runs_ls_json_and_csv_agree_with_mlflow(fastflow_store):
    uri, parent, children = fastflow_store
    oracle = mlflow.MlflowClient(tracking_uri=uri)
    expected = {
        r.info.run_id: r
        for r in oracle.search_runs(
            [e.experiment_id for e in oracle.search_experiments()], max_results=100
        )
    }
    done = cli("runs", "ls", "--json", uri=uri)
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert {r["run_id"] for r in listed} == set(expected)
    for record in listed:
        run = expected[record["run_id"]]
        assert record["status"] == run.info.status
        assert record["start_time"] == run.info.start_time
        assert record["metrics"] == run.data.metrics
        assert record["params"] == run.data.params
        assert record["parent_run_id"] == run.data.tags.get("mlflow.parentRunId")
    by_id = {r["run_id"]: r for r in listed}
    assert all(by_id[c]["depth"] == 1 for c in children) and by_id[parent]["depth"] == 0

    table = cli("runs", "ls", "--csv", "--experiment", "sweep", "--metrics", "loss", uri=uri)
    assert table.returncode == 0, table.stderr
    rows = list(csv.DictReader(io.StringIO(table.stdout)))
    assert {r["run_id"] for r in rows} == {parent, *children}
    for row in rows:
        metrics = expected[row["run_id"]].data.metrics
        assert row["metrics.loss"] == (repr(metrics["loss"]) if "loss" in metrics else "")


def test_filter_order_and_max_as_search_runs(fastflow_store):
    uri, parent, children = fastflow_store
    done = cli(
        "runs",
        "ls",
        "--json",
        "--filter",
        "params.lr = '0.01'",
        "--order-by",
        "start_time DESC",
        uri=uri,
    )
    assert done.returncode == 0, done.stderr
    assert [r["run_name"] for r in json.loads(done.stdout)] == ["lr-0.01"]
    limited = cli("runs", "ls", "--json", "--max", "1", uri=uri)
    assert len(json.loads(limited.stdout)) == 1


def test_a_filter_that_does_not_parse_exits_2_with_mlflows_message(fastflow_store):
    uri, _, _ = fastflow_store
    bad = "metrics.loss <"
    with pytest.raises(mlflow.exceptions.MlflowException) as expected:
        mlflow.MlflowClient(tracking_uri=uri).search_runs(["0"], filter_string=bad)
    done = cli("runs", "ls", "--filter", bad, uri=uri)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip() == f"fastflow: error: {expected.value.message}"


def test_runs_show_lists_params_tags_metric_histories_and_artifacts(fastflow_store):
    uri, parent, children = fastflow_store
    done = cli("runs", "show", children[0], uri=uri)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert children[0] in text and "lr-0.1" in text and "FINISHED" in text
    assert re.search(r"^\s+lr\s+0\.1$", text, re.M)
    loss = next(line for line in text.splitlines() if line.strip().startswith("loss"))
    assert re.search("[▁▂▃▄▅▆▇█]{8,}", loss), loss
    # The sparkline's lowest bar is the series' minimum, which the sampled history kept.
    assert "▁" in loss and "-3" in loss

    detail = json.loads(cli("runs", "show", children[0], "--json", uri=uri).stdout)
    history = mlflow.MlflowClient(tracking_uri=uri).get_metric_history(children[0], "loss")
    values = [m.value for m in history]
    assert detail["metrics"]["loss"]["min"] == min(values) == -3.0
    assert detail["metrics"]["loss"]["max"] == max(values)
    assert detail["metrics"]["loss"]["latest"] == 0.25
    assert (detail["metrics"]["loss"]["first_step"], detail["metrics"]["loss"]["last_step"]) == (
        0,
        501,
    )
    assert detail["params"] == {"lr": "0.1"}

    shown = cli("runs", "show", parent, uri=uri).stdout
    assert "notes.txt" in shown and "5 B" in shown
    assert re.search(r"^\s+team\s+vision$", shown, re.M)
    assert re.search(r"^\s+model\s+mlp$", shown, re.M)

    missing = cli("runs", "show", "0123456789abcdef", uri=uri)
    assert missing.returncode == 1
    assert "Run with id=0123456789abcdef not found" in missing.stderr


def test_experiments_ls(fastflow_store):
    uri, _, _ = fastflow_store
    fastflow.delete_experiment(fastflow.get_experiment_by_name("other").experiment_id)
    fastflow.flush()
    shown = cli("experiments", "ls", uri=uri)
    assert shown.returncode == 0, shown.stderr
    names = [line.split()[1] for line in shown.stdout.splitlines()[1:]]
    assert sorted(names) == ["Default", "sweep"]
    everything = json.loads(cli("experiments", "ls", "--all", "--json", uri=uri).stdout)
    oracle = mlflow.MlflowClient(tracking_uri=uri)
    expected = oracle.search_experiments(view_type=mlflow.entities.ViewType.ALL)
    assert {(e["experiment_id"], e["name"], e["lifecycle_stage"]) for e in everything} == {
        (e.experiment_id, e.name, e.lifecycle_stage) for e in expected
    }


def test_a_store_mlflow_wrote_is_listed_and_shown(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    writer = """
import sys, mlflow
mlflow.set_tracking_uri(sys.argv[1])
mlflow.set_experiment("from-mlflow")
with mlflow.start_run(run_name="outer") as outer:
    mlflow.log_param("alpha", 0.5)
    with mlflow.start_run(run_name="inner", nested=True) as inner:
        for step in range(20):
            mlflow.log_metric("rmse", 1.0 / (step + 1), step=step)
print(inner.info.run_id)
"""
    inner = subprocess.run(
        [sys.executable, "-c", writer, uri], capture_output=True, text=True, check=True
    ).stdout.split()[-1]
    listed = cli("runs", "ls", uri=uri)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[1].startswith("outer") and re.match(r"\s+└ inner", lines[2])
    shown = cli("runs", "show", inner, uri=uri)
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"rmse\s+0\.05\s+0\.05\s+1\s+0\.\.19\s+[▁▂▃▄▅▆▇█]+", shown.stdout)


def test_colours_only_on_a_terminal_and_never_with_no_color(fastflow_store):
    uri, _, _ = fastflow_store
    code, coloured = on_a_terminal("runs", "ls", uri=uri)
    assert code == 0
    assert ANSI.search(coloured), coloured
    code, plain = on_a_terminal("runs", "ls", uri=uri, env={"NO_COLOR": "1"})
    assert code == 0
    assert not ANSI.search(plain)
    assert ANSI.sub("", coloured) == plain
    assert "parent" in plain


def test_a_store_that_does_not_exist_is_not_created(tmp_path):
    path = tmp_path / "absent" / "mlflow.db"
    for args in (["runs", "ls"], ["experiments", "ls"], ["runs", "show", "x"], ["doctor"]):
        done = cli(*args, "--tracking-uri", f"sqlite:///{path}")
        assert done.returncode == 1, (args, done.stderr)
        said = done.stdout + done.stderr
        # doctor's report clips long paths to its 80 columns.
        assert f"no store at {path}" in said if args[0] != "doctor" else "no store at" in said
    assert not path.exists() and not path.parent.exists()


def test_a_store_of_another_schema_version_is_refused(tmp_path, fastflow_store):
    uri, _, _ = fastflow_store
    path = uri[len("sqlite:///") :]
    fastflow.flush()
    old = tmp_path / "old.db"
    shutil.copy(path, old)
    conn = sqlite3.connect(old)
    conn.execute("UPDATE alembic_version SET version_num = '4465047574b1'")
    conn.commit()
    conn.close()
    listed = cli("runs", "ls", uri=f"sqlite:///{old}")
    assert listed.returncode == 1
    assert "4465047574b1" in listed.stderr
    checked = cli("doctor", uri=f"sqlite:///{old}")
    assert checked.returncode == 1
    assert re.search(r"FAIL\s+schema\s+head 4465047574b1", checked.stdout), checked.stdout


# Killed while its writer is far behind: most points wait in the journal. The pause lets the
# last ones reach it (a kill may cost the last few milliseconds of logging otherwise).
KILLED_LOGGER = """
import os, signal, sys, time
import fastflow
fastflow.set_tracking_uri(sys.argv[1])
fastflow.start_run(run_name="doomed")
for step in range(POINTS):
    fastflow.log_metric("loss", 1.0 / (step + 1), step=step)
print(fastflow.active_run().info.run_id, flush=True)
time.sleep(0.05)
os.kill(os.getpid(), signal.SIGKILL)
"""
POINTS = 100_000


def killed_run(uri, spool) -> str:
    done = subprocess.run(
        [sys.executable, "-c", KILLED_LOGGER.replace("POINTS", str(POINTS)), uri],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, FASTFLOW_SPOOL_DIR=str(spool)),
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    return done.stdout.split()[0]


def test_doctor_finds_what_a_killed_process_left_and_fix_repairs_it(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spool = tmp_path / "spool"
    env = {"FASTFLOW_SPOOL_DIR": str(spool)}
    healthy = tmp_path / "healthy.db"
    fastflow.MlflowClient(f"sqlite:///{healthy}").create_experiment("fine")
    fastflow.flush()
    ok = cli("doctor", uri=f"sqlite:///{healthy}", env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "FAIL" not in ok.stdout and "MLflow 3.17.2 opens the store" in ok.stdout
    assert "shared with Python's sqlite3" in ok.stdout
    assert all(len(line) <= 80 for line in ok.stdout.splitlines()), ok.stdout

    run_id = killed_run(uri, spool)
    found = cli("doctor", uri=uri, env=env)
    assert found.returncode == 1, found.stdout + found.stderr
    assert re.search(r"FAIL\s+spool\s+[\d,]+ points of 1 dead process\(es\) wait", found.stdout)
    assert re.search(rf"FAIL\s+dead runs\s+1 run\(s\) left RUNNING.*\n\s+{run_id}\n", found.stdout)
    assert all(len(line) <= 80 for line in found.stdout.splitlines()), found.stdout
    oracle = mlflow.MlflowClient(tracking_uri=uri)
    assert oracle.get_run(run_id).info.status == "RUNNING"

    fixed = cli("doctor", "--fix", uri=uri, env=env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert re.search(r"fixed\s+dead runs\s+1 run\(s\) marked KILLED", fixed.stdout)
    run = oracle.get_run(run_id)
    assert run.info.status == "KILLED" and run.info.end_time is not None
    assert len(oracle.get_metric_history(run_id, "loss")) == POINTS
    again = cli("doctor", uri=uri, env=env)
    assert again.returncode == 0, again.stdout


def test_sync_delivers_exactly_once_with_progress(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spool = tmp_path / "spool"
    env = {"FASTFLOW_SPOOL_DIR": str(spool)}
    run_id = killed_run(uri, spool)
    done = cli("sync", uri=uri, env=env)
    assert done.returncode == 0, done.stderr
    match = re.search(
        r"([\d,]+) points from 1 journal\(s\) delivered, 1 run\(s\) ended", done.stdout
    )
    assert match, done.stdout
    assert re.search(r"delivering: [\d,]+ of [\d,]+ points delivered", done.stderr), done.stderr
    oracle = mlflow.MlflowClient(tracking_uri=uri)
    assert len(oracle.get_metric_history(run_id, "loss")) == POINTS
    assert oracle.get_run(run_id).info.status == "KILLED"
    second = cli("sync", uri=uri, env=env)
    assert second.returncode == 0
    assert "nothing to deliver" in second.stdout
    assert len(oracle.get_metric_history(run_id, "loss")) == POINTS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ui_serves_the_store_on_localhost_and_stops(fastflow_store):
    uri, _, _ = fastflow_store
    port = _free_port()
    process = subprocess.Popen(
        [script(), "ui", "--port", str(port)],
        env=dict(os.environ, MLFLOW_TRACKING_URI=uri),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        body = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                url = f"{base}/api/2.0/mlflow/experiments/search?max_results=100"
                with urllib.request.urlopen(url, timeout=5) as answer:
                    body = json.loads(answer.read())
                break
            except OSError:
                time.sleep(0.5)
        assert body is not None, process.stderr.read() if process.poll() is not None else ""
        assert {e["name"] for e in body["experiments"]} >= {"sweep", "other"}
        with urllib.request.urlopen(base + "/", timeout=10) as page:
            assert page.status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    assert code == 0
    with pytest.raises(OSError):
        urllib.request.urlopen(base + "/", timeout=5)


def test_ui_without_mlflow_names_the_extra(tmp_path, fastflow_store):
    uri, _, _ = fastflow_store
    code = """
import sys

class WithoutMlflow:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "mlflow":
            raise ModuleNotFoundError(f"No module named {name!r}")

import fastflow  # its own finder watches for MLflow; this one goes in front of it
sys.meta_path.insert(0, WithoutMlflow())
from fastflow.cli import main
sys.exit(main(["ui"]))
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(os.environ, MLFLOW_TRACKING_URI=uri),
        timeout=120,
    )
    assert done.returncode == 1
    assert 'pip install "fastflow[mlflow]"' in done.stderr


def test_demo_writes_the_default_store(tmp_path):
    done = cli("demo", cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    listed = cli("runs", "ls", "--json", cwd=tmp_path)
    assert listed.returncode == 0
    runs = json.loads(listed.stdout)
    assert {r["run_name"] for r in runs} >= {"sweep", "lr-0.01", "lr-0.3"}
