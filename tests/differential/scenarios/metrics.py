"""Metrics: values, steps, timestamps and keys of every kind, batches, history, latest values."""

import decimal
import time

import numpy as np
from scenario import scenario

VALUES = {
    "int": 3,
    "float": 1.5,
    "negative_zero": -0.0,
    "true": True,
    "false": False,
    "numeric_string": "1.5",
    "int_string": "7",
    "nan_string": "nan",
    "inf_string": "inf",
    "word": "abc",
    "empty_string": "",
    "none": None,
    "nan": float("nan"),
    "inf": float("inf"),
    "minus_inf": float("-inf"),
    "huge": 1e308,
    "tiny": 5e-324,
    "big_int": 2**70,
    "np_float32": np.float32(1.5),
    "np_float64": np.float64(2.25),
    "np_int64": np.int64(3),
    "np_bool": np.bool_(True),
    "np_0d_array": np.array(3.0),
    "np_1d_array": np.array([1.0]),
    "np_nan": np.float64("nan"),
    "list": [1.0],
    "decimal": decimal.Decimal("1.5"),
    "complex": complex(1, 2),
    "dict": {"a": 1},
}

STEPS = {
    "none": None,
    "zero": 0,
    "negative": -1,
    "five": 5,
    "float": 1.5,
    "float_whole": 2.0,
    "string": "3",
    "word": "abc",
    "true": True,
    "int64_max": 2**63 - 1,
    "too_big": 2**63,
    "int64_min": -(2**63),
}

TIMESTAMPS = {
    "none": None,
    "zero": 0,
    "small": 123,
    "float": 1.5,
    "string": "100",
    "negative": -1,
    "word": "abc",
}

KEYS = {
    "plain": "loss",
    "slash": "train/loss",
    "space": "with space",
    "dots": "a.b.c",
    "dash": "a-b",
    "colon": "a:b",
    "empty": "",
    "bang": "bad!",
    "dotdot": "../x",
    "dotdot_inside": "a/../b",
    "leading_slash": "/lead",
    "trailing_slash": "x/",
    "max_length": "k" * 250,
    "too_long": "k" * 251,
    "unicode": "ключ_損失",
    "none": None,
    "int": 1,
    "newline": "a\nb",
}


def _history(mlflow, call, run_id, key):
    call(mlflow.MlflowClient().get_metric_history, run_id, key)


@scenario(cases=VALUES)
def log_metric_value(mlflow, call, value):
    with mlflow.start_run() as run:
        call(mlflow.log_metric, "m", value)
    call(mlflow.get_run, run.info.run_id)
    _history(mlflow, call, run.info.run_id, "m")


@scenario(cases=VALUES)
def client_log_metric_value(mlflow, call, value):
    client = mlflow.MlflowClient()
    run = call(client.create_run, "0")
    call(client.log_metric, run.info.run_id, "m", value)
    call(client.get_run, run.info.run_id)


@scenario(cases=STEPS)
def log_metric_step(mlflow, call, step):
    with mlflow.start_run() as run:
        call(mlflow.log_metric, "m", 1.0, step=step)
    _history(mlflow, call, run.info.run_id, "m")


@scenario(cases=STEPS)
def client_log_metric_step(mlflow, call, step):
    client = mlflow.MlflowClient()
    run = client.create_run("0")
    call(client.log_metric, run.info.run_id, "m", 1.0, step=step)
    _history(mlflow, call, run.info.run_id, "m")


@scenario(cases=TIMESTAMPS)
def log_metric_timestamp(mlflow, call, timestamp):
    with mlflow.start_run() as run:
        call(mlflow.log_metric, "m", 1.0, step=1, timestamp=timestamp)
    _history(mlflow, call, run.info.run_id, "m")


@scenario(cases=KEYS)
def log_metric_key(mlflow, call, key):
    with mlflow.start_run() as run:
        call(mlflow.log_metric, key, 1.0)
    call(mlflow.get_run, run.info.run_id)


@scenario(cases=KEYS)
def client_log_metric_key(mlflow, call, key):
    client = mlflow.MlflowClient()
    run = client.create_run("0")
    call(client.log_metric, run.info.run_id, key, 1.0)
    call(client.get_run, run.info.run_id)


@scenario
def log_metric_starts_a_run(mlflow, call):
    call(mlflow.log_metric, "m", 1.0)
    call(mlflow.active_run)


@scenario
def log_metric_to_named_run(mlflow, call):
    with mlflow.start_run() as first:
        pass
    call(mlflow.log_metric, "m", 2.0, run_id=first.info.run_id)
    call(mlflow.active_run)
    call(mlflow.get_run, first.info.run_id)


@scenario
def log_metric_to_unknown_run(mlflow, call):
    call(mlflow.log_metric, "m", 2.0, run_id="0" * 32)


@scenario
def log_metric_to_finished_run_by_client(mlflow, call):
    with mlflow.start_run() as run:
        pass
    call(mlflow.MlflowClient().log_metric, run.info.run_id, "late", 1.0)
    call(mlflow.get_run, run.info.run_id)


@scenario
def log_metric_to_deleted_run_by_client(mlflow, call):
    with mlflow.start_run() as run:
        pass
    mlflow.delete_run(run.info.run_id)
    call(mlflow.MlflowClient().log_metric, run.info.run_id, "late", 1.0)


@scenario(cases=[True, False])
def log_metric_synchronous(mlflow, call, synchronous):
    with mlflow.start_run() as run:
        done = call(mlflow.log_metric, "m", 1.0, synchronous=synchronous)
        if done is not None:
            call(done.wait)
    call(mlflow.get_run, run.info.run_id)


@scenario(cases=[True, False])
def log_metrics_synchronous(mlflow, call, synchronous):
    with mlflow.start_run() as run:
        done = call(mlflow.log_metrics, {"a": 1.0, "b": 2.0}, synchronous=synchronous)
        if done is not None:
            call(done.wait)
    call(mlflow.get_run, run.info.run_id)


@scenario(
    cases={
        "empty": {},
        "two": {"b": 2.0, "a": 1.0},
        "nan_and_inf": {"n": float("nan"), "i": float("inf")},
        "bad_value_in_middle": {"a": 1.0, "b": "abc", "c": 3.0},
        "bad_key_in_middle": {"a": 1.0, "bad!": 2.0, "c": 3.0},
        "none_value": {"a": None},
        "numpy_values": {"a": np.float32(0.5), "b": np.int64(4)},
        "many": {f"k{i:04d}": float(i) for i in range(1500)},
    }
)
def log_metrics_batch(mlflow, call, metrics):
    with mlflow.start_run() as run:
        call(mlflow.log_metrics, metrics, step=3)
    call(mlflow.get_run, run.info.run_id)


@scenario
def log_metrics_not_a_dict(mlflow, call):
    with mlflow.start_run():
        call(mlflow.log_metrics, [("a", 1.0)])
        call(mlflow.log_metrics, None)


@scenario
def duplicate_points_are_kept_once(mlflow, call):
    with mlflow.start_run() as run:
        for _ in range(3):
            call(mlflow.log_metric, "m", 1.0, step=1, timestamp=1000)
        call(mlflow.log_metric, "m", 2.0, step=1, timestamp=1000)
    _history(mlflow, call, run.info.run_id, "m")


@scenario
def latest_metric_follows_step_then_timestamp(mlflow, call):
    with mlflow.start_run() as run:
        call(mlflow.log_metric, "m", 5.0, step=10, timestamp=1000)
        call(mlflow.log_metric, "m", 1.0, step=2, timestamp=5000)
        call(mlflow.log_metric, "m", 7.0, step=10, timestamp=900)
        call(mlflow.log_metric, "m", 4.0, step=10, timestamp=1000)
        call(mlflow.log_metric, "m", float("nan"), step=10, timestamp=1000)
        call(mlflow.log_metric, "n", float("nan"), step=1, timestamp=1)
        call(mlflow.log_metric, "n", -1.0, step=1, timestamp=1)
    call(mlflow.get_run, run.info.run_id)


@scenario
def metrics_listed_in_first_logged_order(mlflow, call):
    with mlflow.start_run() as run:
        for key in ("zeta", "alpha", "mid", "Beta", "_under"):
            mlflow.log_metric(key, 1.0)
        mlflow.log_metric("alpha", 2.0, step=1)
    call(mlflow.get_run, run.info.run_id)
    call(mlflow.MlflowClient().get_run, run.info.run_id)


@scenario
def metrics_across_two_runs_interleaved(mlflow, call):
    client = mlflow.MlflowClient()
    a = client.create_run("0")
    b = client.create_run("0")
    for step in range(5):
        client.log_metric(a.info.run_id, "x", step, step=step)
        client.log_metric(b.info.run_id, "y", -step, step=step)
    call(client.get_run, a.info.run_id)
    call(client.get_run, b.info.run_id)
    _history(mlflow, call, a.info.run_id, "x")


@scenario
def metric_history_of_missing_key(mlflow, call):
    with mlflow.start_run() as run:
        pass
    _history(mlflow, call, run.info.run_id, "missing")
    _history(mlflow, call, "0" * 32, "missing")


@scenario
def long_history(mlflow, call):
    with mlflow.start_run() as run:
        for step in range(3000):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    history = call(mlflow.MlflowClient().get_metric_history, run.info.run_id, "loss")
    call.note("count", len(history))


@scenario
def metric_value_types_in_one_run(mlflow, call):
    with mlflow.start_run() as run:
        for i, value in enumerate([1, 2.5, True, np.float32(0.25), "3.5", np.array(4.0)]):
            call(mlflow.log_metric, "m", value, step=i)
    _history(mlflow, call, run.info.run_id, "m")


@scenario(differs="numpy-integers")
def log_metric_numpy_step(mlflow, call):
    with mlflow.start_run() as run:
        call(mlflow.log_metric, "m", 1.0, step=np.int64(2))
    _history(mlflow, call, run.info.run_id, "m")


@scenario(differs="numpy-integers")
def log_metric_numpy_timestamp(mlflow, call):
    with mlflow.start_run() as run:
        call(mlflow.log_metric, "m", 1.0, step=1, timestamp=np.int64(5))
    _history(mlflow, call, run.info.run_id, "m")


@scenario(differs="numpy-integers")
def client_log_metric_numpy_step(mlflow, call):
    client = mlflow.MlflowClient()
    run = client.create_run("0")
    call(client.log_metric, run.info.run_id, "m", 1.0, step=np.int64(7))
    _history(mlflow, call, run.info.run_id, "m")


FROZEN_CLOCK_S = 1_700_000_000.0


@scenario(differs="clock")
def log_metric_under_a_patched_clock(mlflow, call):
    """What freezegun and monkeypatched clocks do to the timestamps of a script."""
    with mlflow.start_run() as run:
        real_time = time.time
        time.time = lambda: FROZEN_CLOCK_S
        try:
            call(mlflow.log_metric, "m", 1.0, step=1)
            call(mlflow.log_metrics, {"a": 2.0, "b": 3.0})
            call(mlflow.MlflowClient().log_metric, run.info.run_id, "c", 4.0)
        finally:
            time.time = real_time
    _history(mlflow, call, run.info.run_id, "m")


@scenario(differs="written-behind")
def killed_right_after_log_metric(mlflow, call):
    """A process killed just after a logging call returned."""
    with mlflow.start_run():
        call(mlflow.log_param, "p", "1")
        call(mlflow.log_metric, "loss", 0.5, step=1)
        call.exit_right_after(mlflow.log_metrics, {"a": 1.0, "b": 2.0})


@scenario
def killed_right_after_a_synchronous_log_metric(mlflow, call):
    with mlflow.start_run():
        call(mlflow.log_metric, "loss", 0.5, step=1, synchronous=True)
        call.exit_right_after(mlflow.log_metrics, {"a": 1.0, "b": 2.0}, synchronous=True)


@scenario
def killed_right_after_flush(mlflow, call):
    with mlflow.start_run():
        call(mlflow.log_metric, "loss", 0.5, step=1)
        call.exit_right_after(mlflow.flush_async_logging)


@scenario(differs="numpy-integers")
def client_log_metric_float32_step_and_timestamp(mlflow, call):
    client = mlflow.MlflowClient()
    run = client.create_run("0")
    call(client.log_metric, run.info.run_id, "m", 1.0, step=np.float32(2.0))
    call(client.log_metric, run.info.run_id, "n", 1.0, timestamp=np.float32(5.0))
    client.set_terminated(run.info.run_id)
