"""Libraries that call MLflow themselves, after `import fastflow`: Hugging Face's
`MLflowCallback`, Ray's own `setup_mlflow` and `MLflowLoggerCallback`, MLflow's system
metrics sampler. Each scenario runs as a script in a fresh interpreter, once with `import
fastflow` first and once with MLflow alone, each on its own SQLite store; real MLflow reads
both stores back and they are compared, ids and times aside (the test process itself keeps
the bridge off: it reads as MLflow alone)."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

# ---- running a scenario both ways ----------------------------------------------------------

VARIANTS = ("fastflow", "mlflow")


def _environment(spool):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "FASTFLOW_", "HF_"))}
    env["FASTFLOW_SPOOL_DIR"] = str(spool)
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["DISABLE_MLFLOW_INTEGRATION"] = "FALSE"
    env["TOKENIZERS_PARALLELISM"] = "false"
    return env


def run_both(directory, script, timeout, *args, returncode=0):
    """Runs ``script`` as ``script <variant> <sqlite uri> *args`` for both variants at once,
    each in its own directory and store; returns {variant: (uri, result, stderr)}."""
    path = directory / "scenario.py"
    path.write_text(script)
    started = {}
    for variant in VARIANTS:
        home = directory / variant
        home.mkdir()
        uri = f"sqlite:///{home / 'mlflow.db'}"
        started[variant] = (
            uri,
            subprocess.Popen(
                [sys.executable, str(path), variant, uri, *map(str, args)],
                cwd=home,
                env=_environment(home / "spool"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            ),
        )
    deadline = time.monotonic() + timeout
    results = {}
    try:
        for variant, (uri, process) in started.items():
            out, err = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert process.returncode == returncode, f"{variant} variant:\n{err[-6000:]}"
            lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
            assert lines, f"{variant} variant printed no result:\n{out[-3000:]}\n{err[-3000:]}"
            results[variant] = (uri, json.loads(lines[-1][len("RESULT ") :]), err)
    finally:
        for _, process in started.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    return results


# ---- what a store holds, ids and times aside -----------------------------------------------

_VOLATILE_TAGS = ("mlflow.user", "mlflow.runName")


def _plain(value, rename):
    return rename(value) if isinstance(value, str) else value


def snapshot(client, roles=None, volatile_metrics=(), rename=lambda s: s):
    """Every run of every experiment, keyed by (experiment name, role or run name): status,
    params, tags, parent, metric histories, dataset inputs and logged-model outputs."""
    roles = roles or {}
    runs = {}
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id], max_results=1000):
            name = roles.get(run.info.run_id, rename(run.info.run_name))
            key = (experiment.name, name)
            assert key not in runs, f"two runs named {key}"
            runs[key] = run
    names = {run.info.run_id: key for key, run in runs.items()}
    out = {}
    for key, run in runs.items():
        tags = {
            k: _plain(v, rename)
            for k, v in run.data.tags.items()
            if not k.startswith("mlflow.source.") and k not in _VOLATILE_TAGS
        }
        parent = tags.pop("mlflow.parentRunId", None)
        metrics = {
            k: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, k))
            for k in run.data.metrics
            if k not in volatile_metrics
        }
        inputs = sorted(
            (
                i.dataset.name,
                i.dataset.digest,
                i.dataset.source_type,
                tuple(sorted((t.key, t.value) for t in i.tags)),
            )
            for i in run.inputs.dataset_inputs
        )
        outputs = sorted(o.step for o in (run.outputs.model_outputs if run.outputs else []))
        out[key] = {
            "status": run.info.status,
            "params": dict(run.data.params),
            "tags": tags,
            "parent": names.get(parent, parent),
            "metrics": metrics,
            "inputs": inputs,
            "outputs": outputs,
        }
    return out


def assert_same_runs(got, expected):
    assert sorted(got) == sorted(expected)
    for key in expected:
        for field in expected[key]:
            assert got[key][field] == expected[key][field], (key, field)


# ---- Hugging Face transformers: MLflowCallback driven as Trainer drives it -----------------

HF_SCRIPT = r"""
import json, os, sys

variant, uri = sys.argv[1], sys.argv[2]
if variant == "fastflow":
    import fastflow as tracking

    assert "mlflow" not in sys.modules, "import fastflow imported MLflow"
else:
    import mlflow as tracking
tracking.set_tracking_uri(uri)
tracking.set_experiment("hf")

from transformers import TrainerControl, TrainerState, TrainingArguments
from transformers.integrations import MLflowCallback

kept = []  # the callback ends its run in __del__: it lives until the end, as in a Trainer


def train(run_name):
    args = TrainingArguments(
        output_dir="out",
        run_name=run_name,
        learning_rate=3e-4,
        num_train_epochs=2,
        seed=7,
        report_to=[],
    )
    state, control = TrainerState(), TrainerControl()
    callback = MLflowCallback()  # imports MLflow here, after fastflow
    kept.append(callback)
    callback.on_train_begin(args, state, control)
    for step in (10, 20, 30):
        state.global_step = step
        logs = {"loss": 1.0 / step, "learning_rate": 3e-4 * (1 - step / 40), "epoch": step / 15}
        callback.on_log(args, state, control, logs=logs)
    callback.on_train_end(args, state, control)


import mlflow

out = {}
with tracking.start_run(run_name="outer") as outer:
    train("hf-inside")
    assert tracking.active_run().info.run_id == outer.info.run_id
    assert mlflow.active_run().info.run_id == outer.info.run_id
out["outer"] = outer.info.run_id

os.environ["MLFLOW_TAGS"] = json.dumps({"release": "rc1"})
train("hf-own")  # no active run: the callback starts one and ends it
del os.environ["MLFLOW_TAGS"]
assert tracking.active_run() is None and mlflow.active_run() is None
out["own"] = tracking.last_active_run().info.run_id

os.environ["MLFLOW_NESTED_RUN"] = "TRUE"
with tracking.start_run(run_name="parent") as parent:
    train("hf-nested")
    assert tracking.active_run().info.run_id == parent.info.run_id
out["parent"] = parent.info.run_id

if variant == "fastflow":
    out["bridge"] = sys.modules["fastflow._bridge"].installed()
else:
    out["bridge"] = "fastflow" in sys.modules
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def hf_stores(tmp_path_factory):
    return run_both(tmp_path_factory.mktemp("hf"), HF_SCRIPT, 300)


def _hf_steps():
    return [(10, 0.1), (20, 0.05), (30, 1.0 / 30)]


def test_hf_callback_logs_into_the_active_fastflow_run(hf_stores, mlflow):
    uri, result, _ = hf_stores["fastflow"]
    assert result["bridge"] is True
    oracle = mlflow.MlflowClient(tracking_uri=uri)
    runs = oracle.search_runs([oracle.get_experiment_by_name("hf").experiment_id])
    # One run a training, none extra: the callback used fastflow's run when it was active.
    assert sorted(r.info.run_name for r in runs) == ["hf-nested", "hf-own", "outer", "parent"]
    assert all(r.info.status == "FINISHED" for r in runs)
    by_name = {r.info.run_name: r for r in runs}
    outer = by_name["outer"]
    assert outer.info.run_id == result["outer"]
    assert outer.data.params["learning_rate"] == "0.0003"
    assert outer.data.params["run_name"] == "hf-inside"
    assert len(outer.data.params) > 50
    history = oracle.get_metric_history(result["outer"], "loss")
    assert sorted((m.step, m.value) for m in history) == _hf_steps()
    assert outer.data.metrics["epoch"] == 2.0
    # Its own run, started and ended by the callback through MLflow, is fastflow's last run.
    assert by_name["hf-own"].info.run_id == result["own"]
    assert by_name["hf-own"].data.tags["release"] == "rc1"
    nested = by_name["hf-nested"]
    assert nested.data.tags["mlflow.parentRunId"] == result["parent"]
    assert (
        sorted((m.step, m.value) for m in oracle.get_metric_history(nested.info.run_id, "loss"))
        == _hf_steps()
    )
    assert by_name["parent"].data.metrics == {}


def test_hf_callback_gives_the_runs_mlflow_gives(hf_stores, mlflow):
    assert hf_stores["mlflow"][1]["bridge"] is False
    got, expected = (snapshot(mlflow.MlflowClient(tracking_uri=hf_stores[v][0])) for v in VARIANTS)
    assert_same_runs(got, expected)


# ---- Ray Tune: Ray's own setup_mlflow in the trainable, Ray's own MLflowLoggerCallback -----

RAY_SCRIPT = r"""
import json, sys

variant, uri, storage, address = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
if variant == "fastflow":
    import fastflow as mlflow  # before Ray and MLflow; trials unpickle it in the workers
else:
    import mlflow

import ray
from ray import tune
from ray.air.integrations.mlflow import MLflowLoggerCallback, setup_mlflow


def trainable(config):
    tracking = setup_mlflow(
        config,
        tracking_uri=uri,
        experiment_name="setup-mlflow",
        run_name=f"trial-lr-{config['lr']}",
        tags={"source": "tune"},
    )
    bridged = int(
        "fastflow._bridge" in sys.modules and sys.modules["fastflow._bridge"].installed()
    )
    for step in range(3):
        if config["lr"] < 0.005 and step == 2:
            raise RuntimeError("diverged")
        loss = config["lr"] / (step + 1)
        tracking.log_metrics({"loss": loss}, step=step)  # the module setup_mlflow returns
        mlflow.log_metric("score", config["lr"] * step, step=step)  # the script's own
        tune.report({"loss": loss, "acc": step / 3, "bridged": bridged})
    if config["lr"] > 0.05:
        tracking.end_run()  # the others leave their run as Ray's example does


ray.init(address=address, log_to_driver=False)  # the test's Ray instance, both variants
mlflow.set_tracking_uri(uri)
mlflow.create_experiment("setup-mlflow")
mlflow.set_experiment("driver")
with mlflow.start_run(run_name="driver") as driver:
    tune.Tuner(
        trainable,
        param_space={"lr": tune.grid_search([0.1, 0.01, 0.001]), "opt": {"name": "sgd"}},
        tune_config=tune.TuneConfig(max_concurrent_trials=2),
        run_config=tune.RunConfig(
            storage_path=storage,
            verbose=0,
            callbacks=[
                MLflowLoggerCallback(
                    tracking_uri=uri, experiment_name="callback", tags={"team": "ml"}
                )
            ],
        ),
    ).fit()
ray.shutdown()
print("RESULT " + json.dumps({"driver": driver.info.run_id}))
"""

# Results Tune reports that differ between any two runs (times, process ids, the trial id:
# logged as a number only when its hex digits happen to be decimal ones).
_TUNE_VOLATILE = (
    "pid",
    "timestamp",
    "time_this_iter_s",
    "time_total_s",
    "time_since_restore",
    "trial_id",
    "bridged",
)


def _trial_name(text):
    return re.sub(r"_[0-9a-f]{5}_(\d{5})", r"_<id>_\1", text)


@pytest.fixture(scope="module")
def tune_stores(tmp_path_factory, ray_cluster):
    directory = tmp_path_factory.mktemp("tune")
    address = ray_cluster.get_runtime_context().gcs_address
    return run_both(directory, RAY_SCRIPT, 600, directory / "ray-results", address)


def _tune_snapshot(mlflow, uri):
    return snapshot(
        mlflow.MlflowClient(tracking_uri=uri),
        volatile_metrics=_TUNE_VOLATILE,
        rename=_trial_name,
    )


def test_ray_setup_mlflow_in_trials_gives_the_runs_mlflow_gives(tune_stores, mlflow):
    got, expected = (_tune_snapshot(mlflow, tune_stores[v][0]) for v in VARIANTS)
    trials = [key for key in expected if key[0] == "setup-mlflow"]
    assert sorted(name for _, name in trials) == [
        "trial-lr-0.001",
        "trial-lr-0.01",
        "trial-lr-0.1",
    ]
    assert expected[("setup-mlflow", "trial-lr-0.1")]["status"] == "FINISHED"
    assert expected[("setup-mlflow", "trial-lr-0.1")]["metrics"]["score"] == [
        (0, 0.0),
        (1, 0.1),
        (2, 0.2),
    ]
    for key in trials:
        mine, theirs = dict(got.get(key) or {}), dict(expected[key])
        # Ray may stop a trial's actor before it exits on its own: MLflow leaves that run
        # RUNNING for good, fastflow ends a run whose process died without ending it as
        # KILLED (its spool, replayed when the store is next opened). Which trials that hits
        # depends on timing; everything else must be equal.
        if theirs.get("status") == "RUNNING" and mine.get("status") == "KILLED":
            mine["status"] = "RUNNING"
        assert mine == theirs, key
    assert got[("driver", "driver")] == expected[("driver", "driver")]


def test_ray_mlflow_logger_callback_gives_the_runs_mlflow_gives(tune_stores, mlflow):
    got, expected = (_tune_snapshot(mlflow, tune_stores[v][0]) for v in VARIANTS)
    trials = sorted(key for key in expected if key[1].startswith("trainable_"))
    assert len(trials) == 3
    assert [expected[key]["status"] for key in trials] == ["FINISHED", "FINISHED", "FAILED"]
    assert expected[trials[0]]["metrics"]["loss"] == [(1, 0.1), (2, 0.05), (3, 0.1 / 3)]
    for key in trials:
        assert got.get(key) == expected[key], key
    assert sorted(got) == sorted(expected)


def test_ray_workers_and_driver_ran_the_bridge(tune_stores, mlflow):
    for variant, expected in (("fastflow", 1.0), ("mlflow", 0.0)):
        oracle = mlflow.MlflowClient(tracking_uri=tune_stores[variant][0])
        runs = oracle.search_runs(
            [e.experiment_id for e in oracle.search_experiments()],
            filter_string="tags.team = 'ml'",
        )
        assert len(runs) == 3
        for run in runs:
            assert run.data.metrics["bridged"] == expected, variant
    # No run of the driver's process is left open; trials' runs are as MLflow leaves them.
    uri = tune_stores["fastflow"][0]
    driver = mlflow.MlflowClient(tracking_uri=uri).get_run(tune_stores["fastflow"][1]["driver"])
    assert driver.info.status == "FINISHED"


# A trial's thread ends with its run open (Ray's example never ends it); Ray then stops the
# trial's actor, at times with SIGTERM. MLflow leaves such a run RUNNING: nothing of MLflow's
# sees a thread that has ended. The same reduced to one process, so that it is deterministic
# (no other thread makes its first run stack after the trial's thread ended).
THREAD_SCRIPT = r"""
import os, signal, sys, threading, time

variant, uri = sys.argv[1], sys.argv[2]
if variant == "fastflow":
    import fastflow  # noqa: F401
import mlflow

mlflow.set_tracking_uri(uri)


def trial():
    mlflow.start_run(run_name="trial")
    mlflow.log_metric("loss", 0.5, step=0)


thread = threading.Thread(target=trial)
thread.start()
thread.join()
print("RESULT {}", flush=True)
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(60)
"""


def test_sigterm_leaves_a_run_of_an_ended_thread_as_mlflow_does(tmp_path, mlflow):
    stores = run_both(tmp_path, THREAD_SCRIPT, 120, returncode=-signal.SIGTERM)
    got, expected = (snapshot(mlflow.MlflowClient(tracking_uri=stores[v][0])) for v in VARIANTS)
    assert expected[("Default", "trial")]["status"] == "RUNNING"
    assert expected[("Default", "trial")]["metrics"] == {"loss": [(0, 0.5)]}
    assert_same_runs(got, expected)
