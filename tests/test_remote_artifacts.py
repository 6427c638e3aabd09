"""Artifacts through a real `mlflow server --serve-artifacts` on 127.0.0.1: runs get
`mlflow-artifacts:` URIs, fastflow streams files up and down through the server's proxy,
real MLflow lists and downloads what fastflow logged (byte for byte), and the reverse."""

import os

import fastflow
import pytest
from conftest import file_tree, remove_large_files, run_python
from remote_server import MlflowServer


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = MlflowServer(tmp_path_factory.mktemp("proxy"), serve_artifacts=True).start()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0")


def test_mlflow_reads_what_fastflow_logged_through_the_proxy(
    server, mlflow, tmp_path, artifact_sources
):
    model, reports = artifact_sources
    fastflow.set_tracking_uri(server.uri)
    fastflow.set_experiment("proxied")
    with fastflow.start_run() as run:
        fastflow.log_metric("loss", 0.5)
        fastflow.log_artifact(str(model))
        fastflow.log_artifact(model, artifact_path="models/best")
        fastflow.log_artifacts(str(reports), artifact_path="reports")
        fastflow.log_text("héllo\n", "notes/readme.txt")
        fastflow.log_dict({"lr": 0.1, "layers": [1, 2]}, "config.json")
        uri = fastflow.get_artifact_uri()
    assert uri.startswith("mlflow-artifacts:/")

    oracle = mlflow.MlflowClient(tracking_uri=server.uri)
    run_id = run.info.run_id
    assert oracle.get_run(run_id).info.artifact_uri == uri
    client = fastflow.MlflowClient()
    for path in (None, "reports", "reports/nested deeper", "models/best/model.bin", "missing"):
        theirs = [(f.path, f.is_dir, f.file_size) for f in oracle.list_artifacts(run_id, path)]
        ours = [(f.path, f.is_dir, f.file_size) for f in client.list_artifacts(run_id, path)]
        assert ours == theirs, path
    assert ("model.bin", False, 3 << 20) in [
        (f.path, f.is_dir, f.file_size) for f in client.list_artifacts(run_id)
    ]

    theirs = oracle.download_artifacts(run_id, "", str(tmp_path / "theirs"))
    mine = client.download_artifacts(run_id, "", tmp_path / "mine")
    assert file_tree(theirs) == file_tree(mine)
    assert file_tree(mine)["model.bin"] == model.read_bytes()
    assert file_tree(mine)[os.path.join("reports", "nested deeper", "data+1.csv")] == b"a,b\n1,2\n"
    # The server keeps the files where its own client would have put them.
    stored = server.artifacts_destination / uri.split(":", 1)[1].lstrip("/")
    assert file_tree(stored) == file_tree(mine)

    mlflow.set_tracking_uri(server.uri)
    assert mlflow.artifacts.load_text(uri + "/notes/readme.txt") == "héllo\n"
    assert mlflow.artifacts.load_dict(uri + "/config.json") == {"lr": 0.1, "layers": [1, 2]}
    single = fastflow.artifacts.download_artifacts(
        artifact_uri=uri + "/models/best/model.bin", dst_path=str(tmp_path / "one")
    )
    with open(single, "rb") as f:
        assert f.read() == model.read_bytes()
    assert fastflow.artifacts.load_text(uri + "/notes/readme.txt") == "héllo\n"
    assert oracle.get_run(run_id).data.metrics == {"loss": 0.5}


def test_fastflow_reads_what_mlflow_logged_through_the_proxy(server, mlflow, tmp_path):
    mlflow.set_tracking_uri(server.uri)
    with mlflow.start_run() as run:
        mlflow.log_text("from mlflow", "a/b.txt")
        mlflow.log_dict({"k": [1]}, "d.json")
    fastflow.set_tracking_uri(server.uri)
    client = fastflow.MlflowClient()
    assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["a", "d.json"]
    path = fastflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="a/b.txt", dst_path=str(tmp_path / "out")
    )
    with open(path) as f:
        assert f.read() == "from mlflow"
    assert fastflow.artifacts.load_dict(run.info.artifact_uri + "/d.json") == {"k": [1]}
    missing = tmp_path / "nothing"
    with pytest.raises(fastflow.MlflowException):
        client.download_artifacts(run.info.run_id, "a/missing.txt", str(missing))


_BIG = """
import os, resource, sys
import fastflow
path, uri, out = sys.argv[1:]
with open(path, "wb") as f:
    chunk = os.urandom(1 << 20)
    for _ in range(1024):
        f.write(chunk)
fastflow.set_tracking_uri(uri)
with fastflow.start_run() as run:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fastflow.log_artifact(path, "big")
    fastflow.MlflowClient().download_artifacts(run.info.run_id, "big", out)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) * 1024, run.info.run_id)
"""


def test_large_files_stream_up_and_down(server, mlflow, tmp_path):
    try:
        growth, run_id = run_python(_BIG, tmp_path / "big.bin", server.uri, tmp_path / "o")
        assert int(growth) < 64 << 20
        (info,) = mlflow.MlflowClient(tracking_uri=server.uri).list_artifacts(run_id, "big")
        assert info.file_size == 1 << 30
        with open(tmp_path / "big.bin", "rb") as a:
            with open(tmp_path / "o" / "big" / "big.bin", "rb") as b:
                while chunk := a.read(1 << 24):
                    assert chunk == b.read(1 << 24)
    finally:
        remove_large_files(server.artifacts_destination)


def test_bad_paths_and_an_unwritable_destination_keep_what_was_logged(server, mlflow, tmp_path):
    source = tmp_path / "f.txt"
    source.write_text("x")
    fastflow.set_tracking_uri(server.uri)
    with fastflow.start_run() as run:
        fastflow.log_metric("kept", 1.0)
        fastflow.log_artifact(str(source), "first")
        with pytest.raises(fastflow.MlflowException, match="Invalid artifact path"):
            fastflow.log_artifact(str(source), artifact_path="../escape")
        with pytest.raises(fastflow.MlflowException, match="does not exist"):
            fastflow.log_artifact(str(tmp_path / "missing.bin"))
        # A directory goes in whole, under its own name, as with MLflow.
        (tmp_path / "folder").mkdir()
        (tmp_path / "folder" / "inner.txt").write_text("in")
        fastflow.log_artifact(str(tmp_path / "folder"))
        # A file where the server must create the run's directory: the server cannot write.
        stored = server.artifacts_destination / run.info.artifact_uri.split(":", 1)[1].lstrip("/")
        (stored / "blocked").write_text("not a directory")
        with pytest.raises(fastflow.MlflowException) as refused:
            fastflow.log_artifact(str(source), "blocked")
        assert "500" in refused.value.message or "failed" in refused.value.message
        fastflow.log_metric("after", 2.0)
    oracle = mlflow.MlflowClient(tracking_uri=server.uri)
    assert oracle.get_run(run.info.run_id).data.metrics == {"kept": 1.0, "after": 2.0}
    listed = [f.path for f in oracle.list_artifacts(run.info.run_id)]
    assert listed == ["blocked", "first", "folder"]
    assert [f.path for f in oracle.list_artifacts(run.info.run_id, "folder")] == [
        "folder/inner.txt"
    ]


def test_a_local_store_cannot_reach_a_proxy_uri(db_uri, tmp_path):
    client = fastflow.MlflowClient()
    experiment = client.create_experiment("proxied-elsewhere", "mlflow-artifacts:/somewhere")
    run = client.create_run(experiment)
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(fastflow.MlflowException, match="tracking URI must be a valid http"):
        client.log_artifact(run.info.run_id, str(tmp_path / "f.txt"))


def test_images_and_tables_through_the_proxy(server, mlflow):
    import numpy as np

    fastflow.set_tracking_uri(server.uri)
    pixels = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    with fastflow.start_run() as run:
        fastflow.log_image(pixels, key="samples", step=2)
        fastflow.log_table({"q": ["a", "b"], "score": [0.5, 1.0]}, "eval/table.json")
        fastflow.log_table({"q": ["c"], "score": [0.0]}, "eval/table.json")
    oracle = mlflow.MlflowClient(tracking_uri=server.uri)
    names = [f.path for f in oracle.list_artifacts(run.info.run_id, "images")]
    assert len(names) == 2
    assert all(n.startswith("images/samples+step+2+timestamp+") for n in names)
    assert oracle.get_run(run.info.run_id).data.tags["mlflow.loggedImages"] == "True"
    mlflow.set_tracking_uri(server.uri)
    table = mlflow.load_table("eval/table.json", run_ids=[run.info.run_id])
    assert list(table["q"]) == ["a", "b", "c"]
