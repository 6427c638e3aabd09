"""System metrics: the same script under MLflow (its psutil sampler) and under fastflow (a Rust
thread), each in a fresh process with its own store, then both stores read by MLflow."""

import json
import os
import subprocess
import sys

import mlflow
import pytest

SCRIPT = r"""
import json, os, sys, time

variant, uri, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
if variant == "fastflow":
    import fastflow as mlflow
else:
    import mlflow
mlflow.set_tracking_uri(uri)
with mlflow.start_run(run_name="sampled", log_system_metrics=True) as run:
    mlflow.log_metric("loss", 0.5)
    time.sleep(seconds)
ended = time.time()
result = {"run": run.info.run_id, "psutil": "psutil" in sys.modules, "ended": ended}
if variant == "fastflow":
    result["mlflow"] = "mlflow" in sys.modules
print("RESULT " + json.dumps(result))
"""


def start_script(tmp_path, variant, seconds=2.5, env=None, script=SCRIPT):
    home = tmp_path / variant
    home.mkdir(exist_ok=True)
    uri = f"sqlite:///{home / 'mlflow.db'}"
    environment = dict(
        os.environ,
        MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL="0.5",
        FASTFLOW_SPOOL_DIR=str(home / "spool"),
    )
    environment.pop("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", None)
    environment.pop("MLFLOW_SYSTEM_METRICS_NODE_ID", None)
    environment.update(env or {})
    process = subprocess.Popen(
        [sys.executable, "-c", script, variant, uri, str(seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        cwd=home,
    )
    return uri, process


def finish_script(uri, process):
    out, err = process.communicate(timeout=180)
    assert process.returncode == 0, err[-4000:]
    line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")][-1]
    return uri, json.loads(line[len("RESULT ") :])


def run_both(tmp_path, **kwargs):
    """The script under fastflow and under MLflow at once: {variant: (uri, result)}."""
    started = {v: start_script(tmp_path, v, **kwargs) for v in ("fastflow", "mlflow")}
    return {v: finish_script(*started[v]) for v in started}


def system_history(uri, run_id):
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    keys = sorted(k for k in run.data.metrics if k.startswith("system/"))
    return run, {k: client.get_metric_history(run_id, k) for k in keys}


def total_memory_mb() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024 / 1e6
    raise AssertionError("no MemTotal")


def test_the_same_keys_as_mlflows_sampler_with_plausible_values(tmp_path):
    both = run_both(tmp_path)
    (ours_uri, ours), (theirs_uri, theirs) = both["fastflow"], both["mlflow"]
    run, history = system_history(ours_uri, ours["run"])
    _, expected = system_history(theirs_uri, theirs["run"])
    assert sorted(history) == sorted(expected)
    assert "system/cpu_utilization_percentage" in history
    assert "system/network_receive_megabytes" in history
    # No psutil and no MLflow in fastflow's process: the sampler is fastflow's own.
    assert not ours["psutil"] and not ours["mlflow"]
    assert run.info.status == "FINISHED"
    assert run.data.metrics["loss"] == 0.5

    memory = total_memory_mb()
    for key, points in history.items():
        steps = [p.step for p in points]
        assert steps == list(range(len(steps))), (key, steps)
        assert len(points) >= 3, (key, len(points))
        for p in points:
            if key.endswith("_percentage"):
                assert 0.0 <= p.value <= 100.0, (key, p.value)
            if key.startswith("system/system_memory_usage_megabytes"):
                assert 0.0 < p.value < memory, (key, p.value)
            if key.startswith("system/disk_"):
                assert p.value > 0.0, (key, p.value)
        # Rounded to one decimal as MLflow rounds its averages (network figures are not).
        if "network" not in key:
            assert all(round(p.value, 1) == p.value for p in points), key
    # Memory as MLflow sees it on this machine, within what another process may change.
    ours_memory = history["system/system_memory_usage_megabytes"][-1].value
    theirs_memory = expected["system/system_memory_usage_megabytes"][-1].value
    assert abs(ours_memory - theirs_memory) < 0.25 * memory
    ours_disk = history["system/disk_usage_percentage"][-1].value
    theirs_disk = expected["system/disk_usage_percentage"][-1].value
    assert abs(ours_disk - theirs_disk) < 5.0
    # Nothing is sampled after the run ended.
    last = max(p.timestamp for points in history.values() for p in points)
    assert last <= run.info.end_time


def test_node_id_and_samples_before_logging(tmp_path):
    env = {
        "MLFLOW_SYSTEM_METRICS_NODE_ID": "node_7",
        "MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING": "2",
        "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "0.3",
    }
    both = run_both(tmp_path, seconds=2.2, env=env)
    (uri, result), (theirs_uri, theirs) = both["fastflow"], both["mlflow"]
    _, history = system_history(uri, result["run"])
    _, expected = system_history(theirs_uri, theirs["run"])
    assert sorted(history) == sorted(expected)
    assert all(k.startswith("system/node_7/") for k in history), list(history)
    cpu = history["system/node_7/cpu_utilization_percentage"]
    # One step per two samples of 0.3 s: about three in 2.2 s, as MLflow logs.
    assert 2 <= len(cpu) <= 4, len(cpu)
    assert abs(len(cpu) - len(expected["system/node_7/cpu_utilization_percentage"])) <= 1


RESUME = r"""
import json, sys, time
variant, uri, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
if variant == "fastflow":
    import fastflow as mlflow
else:
    import mlflow
mlflow.set_tracking_uri(uri)
with mlflow.start_run(log_system_metrics=True) as run:
    time.sleep(seconds)
with mlflow.start_run(run_id=run.info.run_id, log_system_metrics=True):
    time.sleep(seconds)
print("RESULT " + json.dumps({"run": run.info.run_id}))
"""


def test_a_resumed_run_goes_on_from_its_last_step(tmp_path):
    for variant, (uri, result) in run_both(tmp_path, seconds=1.6, script=RESUME).items():
        _, history = system_history(uri, result["run"])
        steps = [p.step for p in history["system/cpu_utilization_percentage"]]
        assert steps == list(range(len(steps))), (variant, steps)
        assert len(steps) >= 4, (variant, steps)


SWITCHES = r"""
import json, os, sys, time
variant, uri, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
if variant == "fastflow":
    import fastflow as mlflow
else:
    import mlflow
mlflow.set_tracking_uri(uri)
seen = {}
mlflow.enable_system_metrics_logging()
seen["enabled"] = os.environ.get("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING")
mlflow.set_system_metrics_sampling_interval(0.4)
mlflow.set_system_metrics_samples_before_logging(1)
mlflow.set_system_metrics_node_id("n1")
seen["interval"] = os.environ.get("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL")
with mlflow.start_run() as on:
    time.sleep(seconds)
with mlflow.start_run(log_system_metrics=False) as opted_out:
    time.sleep(seconds)
mlflow.set_system_metrics_node_id(None)
seen["node"] = os.environ.get("MLFLOW_SYSTEM_METRICS_NODE_ID")
mlflow.disable_system_metrics_logging()
seen["disabled"] = os.environ.get("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING")
with mlflow.start_run() as off:
    time.sleep(seconds)
print("RESULT " + json.dumps({"on": on.info.run_id, "opted_out": opted_out.info.run_id,
                              "off": off.info.run_id, "seen": seen}))
"""


def test_the_switches_set_what_mlflows_set_and_runs_follow_them(tmp_path):
    results = {}
    for variant, (uri, result) in run_both(tmp_path, seconds=1.2, script=SWITCHES).items():
        keys = {
            name: sorted(system_history(uri, result[name])[1])
            for name in ("on", "opted_out", "off")
        }
        results[variant] = (result["seen"], keys)
    assert results["fastflow"] == results["mlflow"]
    seen, keys = results["fastflow"]
    assert keys["on"] and all(k.startswith("system/n1/") for k in keys["on"])
    assert keys["opted_out"] == [] and keys["off"] == []


def test_a_bad_interval_is_logged_and_the_run_goes_on(tmp_path):
    messages = {}
    for variant in ("fastflow", "mlflow"):
        home = tmp_path / variant
        home.mkdir()
        script = (
            "import sys, logging\n"
            f"import {'fastflow as mlflow' if variant == 'fastflow' else 'mlflow'}\n"
            "logging.basicConfig()\n"
            f"mlflow.set_tracking_uri('sqlite:///{home / 'mlflow.db'}')\n"
            "with mlflow.start_run(log_system_metrics=True):\n"
            "    mlflow.log_param('p', 1)\n"
            "print('RESULT ok')\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(os.environ, MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL="often"),
        )
        assert done.returncode == 0 and "RESULT ok" in done.stdout, done.stderr
        # MLflow formats its own log records; the message is what must agree.
        messages[variant] = [
            line[line.index("Failed to start") :]
            for line in done.stderr.splitlines()
            if "mlflow.tracking.fluent" in line and "Failed to start" in line
        ]
    assert messages["fastflow"] == messages["mlflow"] != [], messages


@pytest.mark.parametrize("value", ["yes", "2"])
def test_an_unreadable_switch_is_refused_as_mlflow_refuses_it(tmp_path, value):
    import fastflow

    os.environ["MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"] = value
    try:
        with pytest.raises(ValueError) as ours:
            fastflow.set_tracking_uri(f"sqlite:///{tmp_path / 'a.db'}")
            fastflow.start_run()
        mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'b.db'}")
        with pytest.raises(ValueError) as theirs:
            mlflow.start_run()
    finally:
        del os.environ["MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"]
    assert str(ours.value) == str(theirs.value)
