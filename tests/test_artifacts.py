"""Artifacts in a run's local artifact directory: real MLflow lists and downloads what
fastflow logged (byte for byte), fastflow reads what MLflow logged, and bad paths are
refused with MlflowException."""

import json
import os

import fastflow
import pytest
from conftest import file_tree, run_python


def test_mlflow_lists_and_downloads_what_fastflow_logged(
    db_uri, mlflow, tmp_path, artifact_sources
):
    model, reports = artifact_sources
    with fastflow.start_run() as run:
        fastflow.log_artifact(str(model))
        fastflow.log_artifact(model, artifact_path="models/best")
        fastflow.log_artifacts(str(reports), artifact_path="reports")
        fastflow.log_text("héllo\n", "notes/readme.txt")
        fastflow.log_dict({"lr": 0.1, "layers": [1, 2]}, "config.json")
        fastflow.log_dict({"lr": 0.1}, "config.yaml")
        uri = fastflow.get_artifact_uri()
        assert fastflow.get_artifact_uri("models") == uri + "/models"

    oracle = mlflow.MlflowClient(tracking_uri=db_uri)
    listed = [(f.path, f.is_dir, f.file_size) for f in oracle.list_artifacts(run.info.run_id)]
    ours = [
        (f.path, f.is_dir, f.file_size)
        for f in fastflow.MlflowClient().list_artifacts(run.info.run_id)
    ]
    assert ours == listed
    assert ("model.bin", False, 3 << 20) in listed
    nested = oracle.list_artifacts(run.info.run_id, "reports/nested deeper")
    assert [(f.path, f.file_size) for f in nested] == [("reports/nested deeper/data+1.csv", 8)]

    theirs = oracle.download_artifacts(run.info.run_id, "", str(tmp_path / "theirs"))
    mine = fastflow.MlflowClient().download_artifacts(run.info.run_id, "", tmp_path / "mine")
    assert file_tree(theirs) == file_tree(mine)
    assert file_tree(theirs)["model.bin"] == model.read_bytes()
    assert file_tree(theirs)[os.path.join("models", "best", "model.bin")] == model.read_bytes()
    mlflow.set_tracking_uri(db_uri)
    assert mlflow.artifacts.load_text(uri + "/notes/readme.txt") == "héllo\n"
    assert mlflow.artifacts.load_dict(uri + "/config.json") == {"lr": 0.1, "layers": [1, 2]}
    with open(os.path.join(theirs, "config.yaml")) as f:
        assert f.read() == "lr: 0.1\n"
    assert fastflow.artifacts.load_dict(uri + "/config.json") == {"lr": 0.1, "layers": [1, 2]}


def test_fastflow_reads_what_mlflow_logged(tmp_path, mlflow):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run() as run:
        mlflow.log_text("from mlflow", "a/b.txt")
        mlflow.log_dict({"k": [1]}, "d.json")
    fastflow.set_tracking_uri(uri)
    client = fastflow.MlflowClient()
    assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["a", "d.json"]
    path = fastflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="a/b.txt", dst_path=str(tmp_path / "out")
    )
    with open(path) as f:
        assert f.read() == "from mlflow"
    assert json.loads(open(client.download_artifacts(run.info.run_id, "d.json")).read()) == {
        "k": [1]
    }


@pytest.mark.parametrize("artifact_path", ["../outside", "/abs/path", "a/../../b", "a//b"])
def test_paths_that_escape_the_run_are_refused(db_uri, tmp_path, artifact_path):
    source = tmp_path / "f.txt"
    source.write_text("x")
    with fastflow.start_run():
        fastflow.log_metric("kept", 1.0)
        with pytest.raises(fastflow.MlflowException) as refused:
            fastflow.log_artifact(str(source), artifact_path=artifact_path)
        # MLflow raises this one without an error code: INTERNAL_ERROR.
        assert refused.value.error_code == "INTERNAL_ERROR"
        assert "Invalid artifact path" in refused.value.message
        if ".." in artifact_path or artifact_path.startswith("/"):
            # log_text normalises its file path first, as MLflow does: only escapes fail.
            with pytest.raises(fastflow.MlflowException):
                fastflow.log_text("x", f"{artifact_path}/t.txt")
    assert not (tmp_path / "outside").exists()
    fastflow.flush()
    run = fastflow.last_active_run()
    assert run.data.metrics == {"kept": 1.0}


def test_missing_files_and_directories_given_as_files(db_uri, tmp_path):
    # As MLflow: a missing file is the OS's error, a file given to log_artifacts or a
    # missing directory copies nothing (test_artifact_paths compares them with MLflow).
    (tmp_path / "file").write_text("x")
    with fastflow.start_run() as run:
        with pytest.raises(FileNotFoundError, match="missing.bin"):
            fastflow.log_artifact(str(tmp_path / "missing.bin"))
        fastflow.log_artifacts(str(tmp_path / "file"), "from-a-file")
        fastflow.log_artifacts(str(tmp_path / "missing"), "from-nothing")
    listed = [(f.path, f.is_dir) for f in fastflow.MlflowClient().list_artifacts(run.info.run_id)]
    assert listed == [("from-a-file", True), ("from-nothing", True)]


_BIG = """
import os, resource, sys
import fastflow
path = sys.argv[1]
with open(path, "wb") as f:
    chunk = os.urandom(1 << 20)
    for _ in range(1024):
        f.write(chunk)
fastflow.set_tracking_uri(sys.argv[2])
with fastflow.start_run() as run:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fastflow.log_artifact(path, "big")
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) * 1024, run.info.run_id)
"""


def test_a_one_gibibyte_file_is_streamed(db_uri, tmp_path, mlflow):
    growth, run_id = run_python(_BIG, tmp_path / "big.bin", db_uri)
    assert int(growth) < 64 << 20
    (info,) = mlflow.MlflowClient(tracking_uri=db_uri).list_artifacts(run_id, "big")
    assert info.file_size == 1 << 30


def test_an_unwritable_destination_is_refused_and_keeps_what_was_logged(db_uri, tmp_path, mlflow):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the experiment's artifacts should go")
    client = fastflow.MlflowClient()
    experiment = client.create_experiment("blocked", artifact_location=str(blocker))
    source = tmp_path / "f.txt"
    source.write_text("x")
    with fastflow.start_run(experiment_id=experiment) as run:
        fastflow.log_metric("kept", 1.0)
        # MLflow lets the OS's error through, as fastflow does.
        with pytest.raises(NotADirectoryError):
            fastflow.log_artifact(str(source))
        with pytest.raises(NotADirectoryError):
            fastflow.log_text("x", "notes/t.txt")
        fastflow.log_metric("after", 2.0)
    oracle = mlflow.MlflowClient(tracking_uri=db_uri)
    assert oracle.get_run(run.info.run_id).data.metrics == {"kept": 1.0, "after": 2.0}
    assert blocker.read_text().startswith("a file")


_INTERRUPTED = """
import os, signal, sys, threading, time
import fastflow
# A runner started in the background hands SIGINT down ignored.
signal.signal(signal.SIGINT, signal.default_int_handler)
path, uri = sys.argv[1:]
with open(path, "wb") as f:
    chunk = os.urandom(1 << 20)
    for _ in range(2048):
        f.write(chunk)
fastflow.set_tracking_uri(uri)
with fastflow.start_run() as run:
    fastflow.log_metric("kept", 1.0)
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    start = time.monotonic()
    try:
        fastflow.log_artifact(path, "big")
        print("finished")
    except KeyboardInterrupt:
        print("interrupted", time.monotonic() - start, run.info.artifact_uri, run.info.run_id)
"""


def test_ctrl_c_stops_a_large_copy_and_leaves_no_partial_file(db_uri, tmp_path, mlflow):
    answer = run_python(_INTERRUPTED, tmp_path / "big.bin", db_uri)
    outcome, seconds, artifact_uri, run_id = answer
    assert outcome == "interrupted"
    assert float(seconds) < 5
    assert not os.path.exists(os.path.join(artifact_uri, "big")) or not os.listdir(
        os.path.join(artifact_uri, "big")
    )
    assert mlflow.MlflowClient(tracking_uri=db_uri).get_run(run_id).data.metrics == {"kept": 1.0}
