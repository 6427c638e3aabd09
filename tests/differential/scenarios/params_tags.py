"""Params and tags: values and keys of every kind, limits, truncation, immutability, deletes."""

import numpy as np
from scenario import scenario

VALUES = {
    "string": "v",
    "int": 1,
    "float": 1.5,
    "true": True,
    "none": None,
    "list": [1, 2],
    "dict": {"a": 1},
    "np_float": np.float64(0.1),
    "empty": "",
    "unicode": "значение 🚀",
    "newline": "a\nb",
    "at_param_limit": "p" * 6000,
    "over_param_limit": "p" * 6001,
    "at_tag_limit": "t" * 8000,
    "over_tag_limit": "t" * 8001,
    "complex": complex(1, 2),
}

KEYS = {
    "plain": "lr",
    "slash": "opt/lr",
    "space": "with space",
    "empty": "",
    "bang": "bad!",
    "dotdot": "a/../b",
    "leading_slash": "/x",
    "too_long": "k" * 251,
    "unicode": "ключ",
    "none": None,
    "int": 3,
}


@scenario(cases=VALUES)
def log_param_value(mlflow, call, value):
    with mlflow.start_run() as run:
        call(mlflow.log_param, "p", value)
    call(mlflow.get_run, run.info.run_id)


@scenario(cases=KEYS)
def log_param_key(mlflow, call, key):
    with mlflow.start_run() as run:
        call(mlflow.log_param, key, "v")
    call(mlflow.get_run, run.info.run_id)


@scenario(cases=VALUES)
def set_tag_value(mlflow, call, value):
    with mlflow.start_run() as run:
        call(mlflow.set_tag, "t", value)
    call(mlflow.get_run, run.info.run_id)


@scenario(cases=KEYS)
def set_tag_key(mlflow, call, key):
    with mlflow.start_run() as run:
        call(mlflow.set_tag, key, "v")
    call(mlflow.get_run, run.info.run_id)


@scenario(cases=VALUES)
def client_log_param_value(mlflow, call, value):
    client = mlflow.MlflowClient()
    run = client.create_run("0")
    call(client.log_param, run.info.run_id, "p", value)
    call(client.get_run, run.info.run_id)


@scenario(cases=VALUES)
def client_set_tag_value(mlflow, call, value):
    client = mlflow.MlflowClient()
    run = client.create_run("0")
    call(client.set_tag, run.info.run_id, "t", value)
    call(client.get_run, run.info.run_id)


@scenario(
    cases={"env_true": "true", "env_false": "false", "env_zero": "0"},
)
def truncation_follows_environment(mlflow, call, setting):
    import os

    os.environ["MLFLOW_TRUNCATE_LONG_VALUES"] = setting
    with mlflow.start_run() as run:
        call(mlflow.log_param, "p", "x" * 7000)
        call(mlflow.set_tag, "t", "y" * 9000)
    call(mlflow.get_run, run.info.run_id)


@scenario
def log_param_same_value_twice(mlflow, call):
    with mlflow.start_run() as run:
        call(mlflow.log_param, "p", "1")
        call(mlflow.log_param, "p", 1)
        call(mlflow.log_param, "p", "1")
    call(mlflow.get_run, run.info.run_id)


@scenario
def log_param_changed_value_raises(mlflow, call):
    with mlflow.start_run() as run:
        call(mlflow.log_param, "p", "1")
        call(mlflow.log_param, "p", "2")
        call(mlflow.log_metric, "after", 1.0)
    call(mlflow.get_run, run.info.run_id)


@scenario
def log_param_returns_value(mlflow, call):
    with mlflow.start_run():
        call(mlflow.log_param, "p", 5)
        call(mlflow.log_param, "q", [1, "a"])


@scenario(
    cases={
        "empty": {},
        "several": {"b": 2, "a": "x", "c": None},
        "conflict_in_middle": {"a": 1, "p": "other", "z": 3},
        "bad_key": {"ok": 1, "bad!": 2},
        "too_many": {f"p{i:03d}": i for i in range(150)},
        "long_value": {"long": "v" * 6001},
    }
)
def log_params_batch(mlflow, call, params):
    with mlflow.start_run() as run:
        mlflow.log_param("p", "original")
        call(mlflow.log_params, params)
    call(mlflow.get_run, run.info.run_id)


@scenario(cases=[True, False])
def log_params_synchronous(mlflow, call, synchronous):
    with mlflow.start_run() as run:
        done = call(mlflow.log_params, {"a": 1}, synchronous=synchronous)
        if done is not None:
            call(done.wait)
    call(mlflow.get_run, run.info.run_id)


@scenario(
    cases={
        "empty": {},
        "several": {"b": 2, "a": "x"},
        "system": {"mlflow.user": "someone", "mlflow.source.name": "elsewhere"},
        "run_name": {"mlflow.runName": "renamed"},
        "note": {"mlflow.note.content": "a note"},
        "bad_key": {"ok": 1, "bad!": 2},
        "too_many": {f"t{i:03d}": i for i in range(150)},
    }
)
def set_tags_batch(mlflow, call, tags):
    with mlflow.start_run() as run:
        call(mlflow.set_tags, tags)
    call(mlflow.get_run, run.info.run_id)


@scenario(cases=[True, False])
def set_tag_synchronous(mlflow, call, synchronous):
    with mlflow.start_run() as run:
        done = call(mlflow.set_tag, "t", "v", synchronous=synchronous)
        if done is not None:
            call(done.wait)
        done = call(mlflow.set_tags, {"u": 1}, synchronous=synchronous)
        if done is not None:
            call(done.wait)
    call(mlflow.get_run, run.info.run_id)


@scenario
def set_tag_overwrites(mlflow, call):
    with mlflow.start_run() as run:
        call(mlflow.set_tag, "t", "1")
        call(mlflow.set_tag, "t", "2")
    call(mlflow.get_run, run.info.run_id)


@scenario
def delete_tag(mlflow, call):
    with mlflow.start_run() as run:
        mlflow.set_tag("t", "1")
        call(mlflow.delete_tag, "t")
        call(mlflow.delete_tag, "t")
        call(mlflow.delete_tag, "never")
    call(mlflow.get_run, run.info.run_id)


@scenario
def delete_tag_without_run(mlflow, call):
    call(mlflow.delete_tag, "t")
    call(mlflow.active_run)


@scenario
def client_delete_tag(mlflow, call):
    client = mlflow.MlflowClient()
    run = client.create_run("0")
    client.set_tag(run.info.run_id, "t", "1")
    call(client.delete_tag, run.info.run_id, "t")
    call(client.delete_tag, run.info.run_id, "t")
    call(client.delete_tag, "0" * 32, "t")
    call(client.get_run, run.info.run_id)


@scenario
def client_delete_tag_on_deleted_run(mlflow, call):
    client = mlflow.MlflowClient()
    run = client.create_run("0")
    client.set_tag(run.info.run_id, "t", "1")
    client.delete_run(run.info.run_id)
    call(client.delete_tag, run.info.run_id, "t")
    call(client.set_tag, run.info.run_id, "u", "1")
    call(client.log_param, run.info.run_id, "p", "1")


@scenario
def param_and_tag_on_finished_run(mlflow, call):
    with mlflow.start_run() as run:
        pass
    client = mlflow.MlflowClient()
    call(client.log_param, run.info.run_id, "late", "1")
    call(client.set_tag, run.info.run_id, "late", "1")
    call(client.get_run, run.info.run_id)


@scenario
def set_tag_without_run_starts_one(mlflow, call):
    call(mlflow.set_tag, "t", "v")
    call(mlflow.log_param, "p", "v")
    call(mlflow.active_run)


@scenario
def params_and_tags_listed_in_logged_order(mlflow, call):
    with mlflow.start_run() as run:
        for key in ("zeta", "alpha", "mid"):
            mlflow.log_param(key, key)
            mlflow.set_tag(key, key)
    call(mlflow.get_run, run.info.run_id)


@scenario(differs="bytes-tags")
def client_log_batch_bytes_tag_value(mlflow, call):
    client = mlflow.MlflowClient()
    run = client.create_run("0")
    call(client.log_batch, run.info.run_id, tags=[mlflow.entities.RunTag("t", b"xy")])
    call(client.set_tag, run.info.run_id, "u", "text")
    client.set_terminated(run.info.run_id)
