"""What an installed fastflow does on every supported Python with nothing else installed: log,
flush, search, and read back with the standard library's sqlite3. CI runs this file in fresh
virtual environments of the oldest and newest Python, where no Rust toolchain is reachable,
and the main suite runs it too."""

import os
import sqlite3
import subprocess
import sys

import fastflow


def test_log_flush_search_and_read_back_with_sqlite3(tmp_path):
    db = tmp_path / "smoke.db"
    fastflow.set_tracking_uri(f"sqlite:///{db}")
    fastflow.set_experiment("smoke")
    with fastflow.start_run(run_name="outer") as run:
        fastflow.log_param("lr", "0.01")
        fastflow.set_tag("python", sys.version.split()[0])
        for step in range(1000):
            fastflow.log_metric("loss", 1.0 / (step + 1), step=step)
        fastflow.log_metrics({"acc": 0.5, "f1": 0.25}, step=3)
        with fastflow.start_run(run_name="inner", nested=True) as child:
            fastflow.log_metric("x", 2.0)
        fastflow.flush()

    found = fastflow.search_runs(
        experiment_names=["smoke"], filter_string="params.lr = '0.01'", output_format="list"
    )
    assert [r.info.run_id for r in found] == [run.info.run_id]
    nested = fastflow.search_runs(
        experiment_names=["smoke"],
        filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'",
        output_format="list",
    )
    assert [r.info.run_id for r in nested] == [child.info.run_id]
    history = fastflow.MlflowClient().get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == list(range(1000))

    with sqlite3.connect(db) as conn:
        points = conn.execute(
            "SELECT step, value FROM metrics WHERE run_uuid = ? AND key = 'loss' ORDER BY step",
            (run.info.run_id,),
        ).fetchall()
        latest = dict(
            conn.execute(
                "SELECT key, value FROM latest_metrics WHERE run_uuid = ?", (run.info.run_id,)
            ).fetchall()
        )
        status = conn.execute(
            "SELECT status FROM runs WHERE run_uuid = ?", (child.info.run_id,)
        ).fetchone()
    assert points == [(step, 1.0 / (step + 1)) for step in range(1000)]
    assert latest == {"loss": 1.0 / 1000, "acc": 0.5, "f1": 0.25}
    assert status == ("FINISHED",)


def test_one_sqlite_library_with_python():
    verdict, ours, python, _ = fastflow._fastflow._sqlite_library()
    assert verdict == "shared", (ours, python)


def test_points_outlive_the_process(tmp_path):
    db = tmp_path / "exit.db"
    script = (
        "import sys, fastflow\n"
        "fastflow.set_tracking_uri(sys.argv[1])\n"
        "run = fastflow.start_run()\n"
        "[fastflow.log_metric('m', float(i), step=i) for i in range(10000)]\n"
        "print(run.info.run_id)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, f"sqlite:///{db}"],
        capture_output=True,
        text=True,
        timeout=120,
        # set_experiment exports the experiment's id, as MLflow's does, for child processes.
        env={k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
    )
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.strip()
    with sqlite3.connect(db) as conn:
        count = conn.execute(
            "SELECT count(*) FROM metrics WHERE run_uuid = ?", (run_id,)
        ).fetchone()[0]
        status = conn.execute("SELECT status FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
    assert count == 10000
    assert status == ("FINISHED",)
