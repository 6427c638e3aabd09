"""Many OS processes write one SQLite store at once: no 'database is locked', no lost point."""

import subprocess
import sys

import fastflow
from conftest import sqlite_rows

_WORKER = """
import sys
import fastflow as mlflow

mlflow.set_tracking_uri(sys.argv[1])
index, points = int(sys.argv[2]), int(sys.argv[3])
with mlflow.start_run(run_name=f"process-{index}") as run:
    mlflow.log_param("index", index)
    for step in range(points):
        mlflow.log_metric("loss", float(step), step=step)
        if step % 10_000 == 0:
            mlflow.set_tag("progress", str(step))
print(run.info.run_id)
"""


def test_eight_processes_write_one_store_without_errors_or_loss(db_uri, tmp_path, mlflow):
    processes, points = 8, 100_000
    fastflow.MlflowClient()  # the store exists before the processes race to it
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, db_uri, str(i), str(points)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (_, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr
        assert "locked" not in stderr and "fastflow:" not in stderr, stderr
    run_ids = [stdout.strip() for stdout, _ in outputs]

    db = tmp_path / "fastflow.db"
    assert sqlite_rows(db, "SELECT COUNT(*) FROM metrics")[0][0] == processes * points
    counts = dict(sqlite_rows(db, "SELECT run_uuid, COUNT(DISTINCT step) FROM metrics GROUP BY 1"))
    assert counts == {run_id: points for run_id in run_ids}

    oracle = mlflow.MlflowClient(tracking_uri=db_uri)
    for index, run_id in enumerate(run_ids):
        run = oracle.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert run.data.metrics["loss"] == float(points - 1)
        assert run.data.params == {"index": str(index)}
    history = oracle.get_metric_history(run_ids[0], "loss")
    assert sorted(m.step for m in history) == list(range(points))
