"""Artifact locations fastflow does not serve itself go through MLflow's repositories: an
S3-compatible server (moto's, from PyPI) on 127.0.0.1 reached by MLflow's boto3 path, and an
SFTP server (asyncssh's, from PyPI) reached by MLflow's pysftp path.

fastflow runs in a subprocess with the MLflow bridge on, as for users; the oracle is pure
MLflow in this process. What one logs, the other lists and downloads, byte for byte."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import file_tree
from remote_server import S3Server, free_port

BUCKET = "fastflow-artifacts"

# Logs every kind of artifact into an experiment at sys.argv[2], then lists and downloads
# them with fastflow; prints the run id and what fastflow saw.
_LOG = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    import fastflow as mlflow

    mlflow.set_tracking_uri(sys.argv[1])
    sources, location, downloads = sys.argv[3], sys.argv[2], sys.argv[4]
    experiment = mlflow.create_experiment("remote-artifacts", artifact_location=location)
    mlflow.set_experiment(experiment_id=experiment)
    with mlflow.start_run() as run:
        mlflow.log_metric("loss", 0.5)
        mlflow.log_artifact(os.path.join(sources, "model.bin"), artifact_path="models")
        mlflow.log_artifacts(os.path.join(sources, "reports"), artifact_path="reports")
        mlflow.log_text("trained on 4 GPUs", "notes.txt")
        mlflow.log_dict({"lr": 0.01, "layers": [1, 2]}, "config.yaml")
        mlflow.log_image(np.full((8, 8, 3), 200, dtype=np.uint8), "images/grey.png")
        mlflow.log_table({"q": ["a", "b"], "score": [0.1, 0.9]}, "eval.json")
        mlflow.log_table({"q": ["c"], "score": [0.5]}, "eval.json")
        uri = mlflow.get_artifact_uri()
    client = mlflow.MlflowClient()
    listing = {
        path: [[f.path, f.is_dir, f.file_size] for f in client.list_artifacts(run_id, path)]
        for run_id in [run.info.run_id]
        for path in ("", "reports", "reports/nested deeper", "models")
    }
    whole = client.download_artifacts(run.info.run_id, "", downloads)
    one = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="models/model.bin", dst_path=downloads + "-one"
    )
    print(json.dumps({
        "run_id": run.info.run_id, "artifact_uri": uri, "listing": listing,
        "whole": whole, "one": one,
        "text": mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/notes.txt"),
        "table_rows": len(mlflow.load_table("eval.json", run_ids=[run.info.run_id])),
    }))
    """
)

# Lists and downloads a run MLflow logged.
_READ = textwrap.dedent(
    """
    import json, sys
    import fastflow as mlflow

    mlflow.set_tracking_uri(sys.argv[1])
    run_id, downloads = sys.argv[2], sys.argv[3]
    client = mlflow.MlflowClient()
    listing = {
        path: [[f.path, f.is_dir, f.file_size] for f in client.list_artifacts(run_id, path)]
        for path in ("", "reports")
    }
    whole = mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=downloads)
    print(json.dumps({"listing": listing, "whole": whole}))
    """
)


def _fastflow(script, env, *args):
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _listing(client, run_id, paths):
    return {
        path: [[f.path, f.is_dir, f.file_size] for f in client.list_artifacts(run_id, path)]
        for path in paths
    }


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    server = S3Server(tmp_path_factory.mktemp("moto"), BUCKET).start()
    yield server
    server.stop()


def _child_env(extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_"))}
    env.update(extra)
    return env


def test_s3_artifacts_fastflow_logs_are_what_mlflow_lists_and_downloads(
    s3_server, artifact_sources, tmp_path, mlflow, monkeypatch
):
    aws = s3_server.env
    for name, value in aws.items():
        monkeypatch.setenv(name, value)
    model, reports = artifact_sources
    store = f"sqlite:///{tmp_path / 'store.db'}"
    location = f"s3://{BUCKET}/fastflow-logged"
    seen = _fastflow(
        _LOG, _child_env(aws), store, location, model.parent, tmp_path / "fastflow-download"
    )
    run_id = seen["run_id"]
    assert seen["artifact_uri"] == f"{location}/{run_id}/artifacts"

    oracle = mlflow.MlflowClient(tracking_uri=store)
    assert oracle.get_run(run_id).info.artifact_uri == seen["artifact_uri"]
    assert seen["listing"] == _listing(oracle, run_id, list(seen["listing"]))
    ours = file_tree(seen["whole"])
    theirs = file_tree(oracle.download_artifacts(run_id, "", str(tmp_path / "mlflow-download")))
    assert ours == theirs
    assert ours["models/model.bin"] == model.read_bytes()
    assert ours["reports/nested deeper/data+1.csv"] == b"a,b\n1,2\n"
    assert ours["notes.txt"] == b"trained on 4 GPUs"
    assert json.loads(ours["eval.json"])["data"] == [["a", 0.1], ["b", 0.9], ["c", 0.5]]
    with open(seen["one"], "rb") as f:
        assert f.read() == model.read_bytes()
    assert seen["text"] == "trained on 4 GPUs"
    assert seen["table_rows"] == 3
    # The objects are in the bucket where MLflow's layout puts them.
    keys = {
        o["Key"]
        for o in s3_server.client()
        .list_objects_v2(Bucket=BUCKET, Prefix=f"fastflow-logged/{run_id}/")
        .get("Contents", [])
    }
    prefix = f"fastflow-logged/{run_id}/artifacts/"
    assert {k[len(prefix) :] for k in keys} == set(ours)


def test_s3_artifacts_mlflow_logged_are_what_fastflow_lists_and_downloads(
    s3_server, artifact_sources, tmp_path, mlflow, monkeypatch
):
    aws = s3_server.env
    for name, value in aws.items():
        monkeypatch.setenv(name, value)
    model, reports = artifact_sources
    store = f"sqlite:///{tmp_path / 'store.db'}"
    oracle = mlflow.MlflowClient(tracking_uri=store)
    experiment = oracle.create_experiment("by-mlflow", artifact_location=f"s3://{BUCKET}/mlf")
    run = oracle.create_run(experiment)
    oracle.log_artifact(run.info.run_id, str(model), "models")
    oracle.log_artifacts(run.info.run_id, str(reports), "reports")
    oracle.log_text(run.info.run_id, "from MLflow", "notes.txt")
    oracle.set_terminated(run.info.run_id)

    seen = _fastflow(_READ, _child_env(aws), store, run.info.run_id, tmp_path / "ours")
    assert seen["listing"] == _listing(oracle, run.info.run_id, list(seen["listing"]))
    theirs = oracle.download_artifacts(run.info.run_id, "", str(tmp_path / "theirs"))
    assert file_tree(seen["whole"]) == file_tree(theirs)
    assert file_tree(seen["whole"])["models/model.bin"] == model.read_bytes()


@pytest.fixture(scope="module")
def sftp_server(tmp_path_factory):
    """The SFTP server, and a home whose known_hosts trusts its key (pysftp checks it)."""
    import asyncssh

    base = tmp_path_factory.mktemp("sftp")
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(base / "host_key"))
    home = base / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "known_hosts").write_text(
        f"127.0.0.1 {key.export_public_key().decode().strip()}\n"
    )
    root = base / "root"
    root.mkdir()
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            os.path.join(os.path.dirname(__file__), "sftp_server.py"),
            str(root),
            str(port),
            str(base / "host_key"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "ready"
    yield f"sftp://ana:pw@127.0.0.1:{port}", home, root
    process.terminate()
    process.wait(timeout=30)


def test_sftp_artifacts_fastflow_logs_are_what_mlflow_lists_and_downloads(
    sftp_server, artifact_sources, tmp_path, mlflow, monkeypatch
):
    server, home, root = sftp_server
    monkeypatch.setenv("HOME", str(home))
    model, _ = artifact_sources
    store = f"sqlite:///{tmp_path / 'store.db'}"
    location = f"{server}/fastflow-logged"
    seen = _fastflow(
        _LOG,
        _child_env({"HOME": str(home)}),
        store,
        location,
        model.parent,
        tmp_path / "fastflow-download",
    )
    run_id = seen["run_id"]
    oracle = mlflow.MlflowClient(tracking_uri=store)
    assert seen["listing"] == _listing(oracle, run_id, list(seen["listing"]))
    ours = file_tree(seen["whole"])
    theirs = file_tree(oracle.download_artifacts(run_id, "", str(tmp_path / "mlflow-download")))
    assert ours == theirs
    assert ours["models/model.bin"] == model.read_bytes()
    # On the server, in MLflow's layout.
    assert file_tree(root / "fastflow-logged" / run_id / "artifacts") == ours
    assert seen["text"] == "trained on 4 GPUs"
