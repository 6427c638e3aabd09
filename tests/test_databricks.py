"""``databricks`` tracking URIs against a workspace stand-in: a real ``mlflow server`` on
127.0.0.1 behind a proxy that demands ``Authorization: Bearer <token>``, served at the host
``DATABRICKS_HOST`` names. Real MLflow reads back what fastflow logged (straight from the
server, and through its own ``databricks`` store); errors are compared with MLflow's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import fastflow
import pytest
from remote_server import MlflowServer, Proxy

TOKEN = "dapi-7f3c9e1b5a2d4c6e8f0a1b2c3d4e5f6a"
EXPERIMENT = "/Users/ana@example.com/fastflow-workspace"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("workspace")).start()
    proxy = Proxy(server.uri, token=TOKEN)
    yield server, proxy
    proxy.close()
    server.stop()


def _env(home, **extra):
    """This process's environment without any Databricks or MLflow settings of its own."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABRICKS_", "MLFLOW_TRACKING_", "MLFLOW_EXPERIMENT"))
    }
    env["HOME"] = str(home)
    env.update({k: str(v) for k, v in extra.items()})
    return env


# Logs what the issue asks for, prints the ids as JSON, and puts every repr and message a
# user could see on stdout/stderr (DEBUG logging on), so the token can be looked for there.
_LOG_SCRIPT = textwrap.dedent(
    """
    import json, logging, sys
    logging.basicConfig(level=logging.DEBUG)
    import fastflow as mlflow

    mlflow.set_tracking_uri(sys.argv[1])
    experiment = mlflow.set_experiment(sys.argv[2])
    with mlflow.start_run(run_name="parent") as parent:
        mlflow.log_params({"lr": 0.01, "layers": 3})
        for step in range(3_000):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metrics({"accuracy": 0.9, "f1": 0.8}, step=3_000)
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_metric("inner", 2.5)
            mlflow.set_tag("note", "nested")
        client = mlflow.MlflowClient()
        print(repr(client), repr(client._tracker), mlflow.get_tracking_uri(), file=sys.stderr)
        print(repr(mlflow.active_run()), file=sys.stderr)
    print(json.dumps({
        "experiment": experiment.experiment_id, "name": experiment.name,
        "parent": parent.info.run_id, "child": child.info.run_id,
    }))
    """
)


def _run_script(script, env, *args, timeout=300):
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done


def _check_logged(server, ids, mlflow):
    oracle = mlflow.MlflowClient(tracking_uri=server.uri)
    experiment = oracle.get_experiment(ids["experiment"])
    assert experiment.name == EXPERIMENT == ids["name"]
    parent = oracle.get_run(ids["parent"])
    assert parent.info.status == "FINISHED"
    assert parent.data.params == {"lr": "0.01", "layers": "3"}
    assert parent.data.metrics == {"loss": 1.0 / 3_000, "accuracy": 0.9, "f1": 0.8}
    history = oracle.get_metric_history(ids["parent"], "loss")
    assert sorted(m.step for m in history) == list(range(3_000))
    child = oracle.get_run(ids["child"])
    assert child.data.tags["mlflow.parentRunId"] == ids["parent"]
    assert child.data.tags["note"] == "nested"
    assert child.data.metrics == {"inner": 2.5}
    assert child.info.experiment_id == ids["experiment"]


def _no_token_in(done):
    assert TOKEN not in done.stdout
    assert TOKEN not in done.stderr
    # Not a piece of it either (a token cut short in a message would still leak).
    assert TOKEN[5:20] not in done.stdout + done.stderr


def test_environment_variables_reach_the_workspace(workspace, tmp_path, mlflow):
    server, proxy = workspace
    env = _env(tmp_path, DATABRICKS_HOST=proxy.uri, DATABRICKS_TOKEN=TOKEN)
    done = _run_script(_LOG_SCRIPT, env, "databricks", EXPERIMENT)
    assert done.returncode == 0, done.stderr[-3000:]
    ids = json.loads(done.stdout.strip().splitlines()[-1])
    _check_logged(server, ids, mlflow)
    _no_token_in(done)
    # Every request carried the bearer token: the metric batches too.
    assert set(proxy.authorizations) == {f"Bearer {TOKEN}"}


def test_mlflows_databricks_store_reads_what_fastflow_logged(workspace, tmp_path, mlflow):
    server, proxy = workspace
    env = _env(tmp_path, DATABRICKS_HOST=proxy.uri, DATABRICKS_TOKEN=TOKEN)
    done = _run_script(_LOG_SCRIPT, env, "databricks", EXPERIMENT + "-read")
    assert done.returncode == 0, done.stderr[-3000:]
    ids = json.loads(done.stdout.strip().splitlines()[-1])
    read = _run_script(
        textwrap.dedent(
            """
            import json, sys
            import mlflow
            client = mlflow.MlflowClient("databricks")
            run = client.get_run(sys.argv[1])
            child = client.get_run(sys.argv[2])
            history = client.get_metric_history(sys.argv[1], "loss")
            print(json.dumps([run.data.params, run.data.metrics, len(history),
                              child.data.tags["mlflow.parentRunId"]]))
            """
        ),
        env,
        ids["parent"],
        ids["child"],
    )
    assert read.returncode == 0, read.stderr[-3000:]
    params, metrics, points, parent_of_child = json.loads(read.stdout.strip().splitlines()[-1])
    assert params == {"lr": "0.01", "layers": "3"}
    assert metrics == {"loss": 1.0 / 3_000, "accuracy": 0.9, "f1": 0.8}
    assert points == 3_000
    assert parent_of_child == ids["parent"]


def _write_config(path, host, profile="fastflow-test", token=TOKEN):
    path.write_text(
        f"[DEFAULT]\nhost = https://default.invalid\ntoken = not-this-one\n\n"
        f"[{profile}]\nhost = {host}\ntoken = {token}\n"
    )


def test_a_profile_of_databrickscfg_in_home(workspace, tmp_path, mlflow):
    server, proxy = workspace
    _write_config(tmp_path / ".databrickscfg", proxy.uri)
    env = _env(tmp_path)
    done = _run_script(_LOG_SCRIPT, env, "databricks://fastflow-test", EXPERIMENT + "-profile")
    assert done.returncode == 0, done.stderr[-3000:]
    ids = json.loads(done.stdout.strip().splitlines()[-1])
    assert ids["name"] == EXPERIMENT + "-profile"
    oracle = mlflow.MlflowClient(tracking_uri=server.uri)
    assert oracle.get_run(ids["child"]).data.tags["mlflow.parentRunId"] == ids["parent"]
    assert len(oracle.get_metric_history(ids["parent"], "loss")) == 3_000
    _no_token_in(done)


def test_config_file_and_profile_from_the_environment(workspace, tmp_path, mlflow):
    server, proxy = workspace
    config = tmp_path / "elsewhere.cfg"
    _write_config(config, proxy.uri, profile="team")
    env = _env(tmp_path, DATABRICKS_CONFIG_FILE=config, DATABRICKS_CONFIG_PROFILE="team")
    done = _run_script(_LOG_SCRIPT, env, "databricks", EXPERIMENT + "-team")
    assert done.returncode == 0, done.stderr[-3000:]
    ids = json.loads(done.stdout.strip().splitlines()[-1])
    assert mlflow.MlflowClient(tracking_uri=server.uri).get_run(ids["parent"]).data.params
    _no_token_in(done)


# The first failing call's error, as each tool raises it.
_ERROR_SCRIPT = textwrap.dedent(
    """
    import json, sys
    if sys.argv[1] == "fastflow":
        import fastflow as mlflow
    else:
        import mlflow
    mlflow.set_tracking_uri(sys.argv[2])
    try:
        mlflow.set_experiment("/Users/ana@example.com/refused")
    except Exception as e:
        print(json.dumps([e.error_code, e.message, str(e), repr(e)]))
    """
)


def _error(tool, uri, env):
    done = _run_script(_ERROR_SCRIPT, env, tool, uri)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done


def test_a_wrong_token_gives_mlflows_error(workspace, tmp_path):
    _, proxy = workspace
    wrong = "dapi-0000000000-not-the-token"
    env = _env(tmp_path, DATABRICKS_HOST=proxy.uri, DATABRICKS_TOKEN=wrong)
    ours, done = _error("fastflow", "databricks", env)
    assert ours[0] == "PERMISSION_DENIED"
    assert ours[1] == "403: Invalid access token."
    assert wrong not in done.stdout + done.stderr
    # MLflow's client without the Databricks SDK sends the token itself, as fastflow does:
    # the same error, word for word.
    legacy, _ = _error("mlflow", "databricks", {**env, "MLFLOW_ENABLE_DB_SDK": "false"})
    assert ours[:3] == legacy[:3]
    # Through the SDK, MLflow adds the SDK's summary of its configuration to the message.
    sdk, _ = _error("mlflow", "databricks", env)
    assert sdk[0] == ours[0]
    assert sdk[1].startswith(ours[1])


def test_no_credentials_gives_mlflows_error(tmp_path):
    ours, _ = _error("fastflow", "databricks", _env(tmp_path))
    legacy, _ = _error("mlflow", "databricks", {**_env(tmp_path), "MLFLOW_ENABLE_DB_SDK": "false"})
    assert ours[:2] == legacy[:2]
    assert "Reading Databricks credential configuration failed" in ours[1]


def test_the_token_is_in_no_repr_or_message_in_this_process(workspace, monkeypatch):
    _, proxy = workspace
    monkeypatch.setenv("DATABRICKS_HOST", proxy.uri)
    monkeypatch.setenv("DATABRICKS_TOKEN", TOKEN)
    with pytest.raises(fastflow.MlflowException) as malformed:
        fastflow.MlflowClient("databricks://").get_experiment("0")
    assert "no netloc" in malformed.value.message
    client = fastflow.MlflowClient("databricks")
    experiment_id = client.create_experiment(EXPERIMENT + "-in-process")
    with pytest.raises(fastflow.MlflowException) as missing:
        client.get_run("0" * 32)
    shown = [repr(client), repr(client._tracker), str(missing.value), repr(missing.value)]
    shown += [repr(client.get_experiment(experiment_id)), client._tracker.path]
    assert all(TOKEN not in text for text in shown)
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_ray_workers_log_child_runs_through_the_drivers_context(
    workspace, ray_cluster, mlflow, monkeypatch
):
    """Workers were started before DATABRICKS_* were set here: what they know of the
    workspace came from the driver's context, through Ray."""
    ray = ray_cluster
    server, proxy = workspace
    monkeypatch.setenv("DATABRICKS_HOST", proxy.uri)
    monkeypatch.setenv("DATABRICKS_TOKEN", TOKEN)

    @ray.remote
    def train(index):
        import os

        import fastflow as mlflow

        assert "DATABRICKS_TOKEN" not in os.environ
        with mlflow.start_run(nested=True, run_name=f"task-{index}") as run:
            mlflow.log_param("index", index)
            for step in range(500):
                mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
            return run.info.run_id, mlflow.get_tracking_uri()

    previous = fastflow.get_tracking_uri()
    try:
        fastflow.set_tracking_uri("databricks")
        fastflow.set_experiment(EXPERIMENT + "-ray")
        with fastflow.start_run(run_name="driver") as parent:
            results = ray.get([train.remote(i) for i in range(4)])
    finally:
        fastflow.set_tracking_uri(previous)
    oracle = mlflow.MlflowClient(tracking_uri=server.uri)
    for index, (run_id, uri) in enumerate(results):
        assert uri == "databricks"
        run = oracle.get_run(run_id)
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.params == {"index": str(index)}
        assert run.info.status == "FINISHED"
        assert len(oracle.get_metric_history(run_id, "loss")) == 500


def test_mlflow_code_in_the_same_process_sees_what_fastflow_queued(workspace, tmp_path):
    """With MLflow in the process (the bridge on, as for users), MLflow's own databricks
    store is bridged: its reads come after the points fastflow queued."""
    _, proxy = workspace
    env = _env(tmp_path, DATABRICKS_HOST=proxy.uri, DATABRICKS_TOKEN=TOKEN)
    done = _run_script(
        textwrap.dedent(
            """
            import json
            import fastflow
            import mlflow

            fastflow.set_tracking_uri("databricks")
            fastflow.set_experiment("/Users/ana@example.com/bridged")
            with fastflow.start_run() as run:
                for step in range(2_000):
                    fastflow.log_metric("loss", float(step), step=step)
                store = mlflow.tracking._tracking_service.utils._get_store()
                seen = mlflow.MlflowClient().get_run(run.info.run_id).data.metrics
                history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")
            print(json.dumps([type(store).__name__, seen, len(history)]))
            """
        ),
        env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    store, metrics, points = json.loads(done.stdout.strip().splitlines()[-1])
    assert store == "FastflowDatabricksRestStore"
    assert metrics == {"loss": 1999.0}
    assert points == 2_000
    _no_token_in(done)


def test_registry_uris_stay_mlflows(tmp_path):
    """Unity Catalog registry URIs are MLflow's, through the bridge: the same defaults and
    settings as MLflow gives for a databricks tracking URI."""
    script = textwrap.dedent(
        """
        import json, sys
        if sys.argv[1] == "fastflow":
            import fastflow as mlflow
        else:
            import mlflow
        mlflow.set_tracking_uri("databricks")
        default = mlflow.get_registry_uri()
        mlflow.set_registry_uri("databricks-uc://prod")
        print(json.dumps([default, mlflow.get_registry_uri(), mlflow.get_tracking_uri()]))
        """
    )
    env = _env(tmp_path, DATABRICKS_HOST="http://127.0.0.1:9", DATABRICKS_TOKEN=TOKEN)
    seen = {}
    for tool in ("fastflow", "mlflow"):
        done = _run_script(script, env, tool)
        assert done.returncode == 0, done.stderr[-3000:]
        seen[tool] = json.loads(done.stdout.strip().splitlines()[-1])
    assert (
        seen["fastflow"]
        == seen["mlflow"]
        == ["databricks-uc", "databricks-uc://prod", "databricks"]
    )
