"""``start_run(log_system_metrics=True)`` and ``mlflow.enable_system_metrics_logging()``:
MLflow's own sampler on fastflow's run, read back by MLflow alone."""

import json
import os
import subprocess
import sys

SCRIPT = """
import json, sys, time
import fastflow as mlflow

mlflow.set_tracking_uri(sys.argv[1])
with mlflow.start_run(log_system_metrics=True) as explicit:
    time.sleep(2.5)
mlflow.enable_system_metrics_logging()
with mlflow.start_run() as from_switch:
    time.sleep(2.5)
mlflow.disable_system_metrics_logging()
with mlflow.start_run() as without:
    time.sleep(1.5)
print(json.dumps([explicit.info.run_id, from_switch.info.run_id, without.info.run_id]))
"""

READ = """
import json, sys
import mlflow

client = mlflow.MlflowClient(sys.argv[1])
print(json.dumps([
    sorted(k for k in client.get_run(run_id).data.metrics if k.startswith("system/"))
    for run_id in json.loads(sys.argv[2])
]))
"""


def test_mlflows_sampler_logs_into_fastflows_runs(tmp_path):
    uri = f"sqlite:///{tmp_path / 'system.db'}"
    env = {**os.environ, "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "0.5"}
    env["MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, uri], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run_ids = done.stdout.strip().splitlines()[-1]
    read = subprocess.run(
        [sys.executable, "-c", READ, uri, run_ids], capture_output=True, text=True, timeout=300
    )
    assert read.returncode == 0, read.stderr[-3000:]
    explicit, from_switch, without = json.loads(read.stdout.strip().splitlines()[-1])
    assert "system/cpu_utilization_percentage" in explicit, explicit
    assert "system/system_memory_usage_megabytes" in explicit, explicit
    assert "system/cpu_utilization_percentage" in from_switch, from_switch
    assert without == []
