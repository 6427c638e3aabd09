"""Artifacts: files, directories, text, dicts, streams, figures, images and tables, with the
paths MLflow normalises or refuses; listing and downloading them back."""

import io
import os

from scenario import scenario

PATHS = {
    "none": None,
    "plain": "dir",
    "nested": "a/b",
    "dot": ".",
    "dot_slash": "./dir",
    "trailing_slash": "dir/",
    "dotdot_inside": "a/../b",
    "dotdot_escape": "../outside",
    "leading_slash": "/abs",
    "space_plus": "with space+plus",
    "unicode": "данные",
    "empty": "",
}

FILE_NAMES = {
    "plain": "file.txt",
    "dot_slash": "./file.txt",
    "dotdot_inside": "dir/../file.txt",
    "nested": "a/b/file.txt",
    "dotdot_escape": "../file.txt",
    "leading_slash": "/file.txt",
    "trailing_slash": "dir/",
    "space_plus": "a b+c.txt",
    "empty": "",
}


def _inputs():
    """Files to log, made in the scenario's directory under inputs/ (not compared)."""
    root = os.path.join(os.getcwd(), "inputs")
    os.makedirs(os.path.join(root, "folder", "nested deeper"), exist_ok=True)
    with open(os.path.join(root, "model.bin"), "wb") as f:
        f.write(bytes(range(256)) * 8)
    with open(os.path.join(root, "folder", "summary.md"), "w") as f:
        f.write("# ok\n")
    with open(os.path.join(root, "folder", "nested deeper", "data+1.csv"), "w") as f:
        f.write("a,b\n1,2\n")
    return root


def _tree(mlflow, call, run_id, path=None):
    call(mlflow.MlflowClient().list_artifacts, run_id, path)


@scenario(cases=PATHS)
def log_artifact_file(mlflow, call, artifact_path):
    root = _inputs()
    with mlflow.start_run() as run:
        call(mlflow.log_artifact, os.path.join(root, "model.bin"), artifact_path)
    _tree(mlflow, call, run.info.run_id)


@scenario(cases=PATHS)
def log_artifacts_directory(mlflow, call, artifact_path):
    root = _inputs()
    with mlflow.start_run() as run:
        call(mlflow.log_artifacts, os.path.join(root, "folder"), artifact_path)
    _tree(mlflow, call, run.info.run_id)


@scenario(cases={"none": None, "plain": "under", "nested": "x/y"})
def log_artifact_of_a_directory(mlflow, call, artifact_path):
    root = _inputs()
    with mlflow.start_run() as run:
        call(mlflow.log_artifact, os.path.join(root, "folder"), artifact_path)
    _tree(mlflow, call, run.info.run_id)


@scenario
def log_artifact_missing_file(mlflow, call):
    with mlflow.start_run():
        call(mlflow.log_artifact, "does-not-exist.txt")
        call(mlflow.log_artifacts, "no-such-dir")


@scenario(cases=FILE_NAMES)
def log_text_path(mlflow, call, name):
    with mlflow.start_run() as run:
        call(mlflow.log_text, "hello\n", name)
    _tree(mlflow, call, run.info.run_id)


@scenario(
    cases={
        "json": "conf.json",
        "yaml": "conf.yaml",
        "yml": "conf.yml",
        "other": "conf.txt",
        "dot_slash": "./conf.json",
        "dotdot_inside": "d/../conf.json",
    }
)
def log_dict_path(mlflow, call, name):
    with mlflow.start_run() as run:
        call(mlflow.log_dict, {"b": [1, 2], "a": {"x": "é"}}, name)
    _tree(mlflow, call, run.info.run_id)


@scenario(cases={"plain": "blob.bin", "dot_slash": "./s/blob.bin", "dotdot": "s/../blob.bin"})
def log_stream_path(mlflow, call, name):
    with mlflow.start_run() as run:
        call(mlflow.log_stream, io.BytesIO(b"\x00\x01data"), name)
    _tree(mlflow, call, run.info.run_id)


@scenario(cases={"png": "fig.png", "dot_slash": "./plots/fig.png", "dotdot": "p/../fig.png"})
def log_figure_path(mlflow, call, name):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    with mlflow.start_run() as run:
        call(mlflow.log_figure, fig, name)
    call.note("files", [f.path for f in mlflow.MlflowClient().list_artifacts(run.info.run_id)])


@scenario(cases={"png": "img.png", "dot_slash": "./images/img.png", "dotdot": "i/../img.png"})
def log_image_path(mlflow, call, name):
    import numpy as np

    image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    with mlflow.start_run() as run:
        call(mlflow.log_image, image, name)
    _tree(mlflow, call, run.info.run_id)


@scenario
def log_image_series(mlflow, call):
    import numpy as np

    image = np.zeros((2, 2, 3), dtype=np.uint8)
    with mlflow.start_run() as run:
        call(mlflow.log_image, image, key="samples", step=3)
        call(mlflow.log_image, image, "a.png", key="both")
    call.note("files", [f.path for f in mlflow.MlflowClient().list_artifacts(run.info.run_id)])


@scenario
def log_table_and_load(mlflow, call):
    with mlflow.start_run() as run:
        call(mlflow.log_table, {"q": ["a", "b"], "score": [0.1, 0.9]}, "eval.json")
        call(mlflow.log_table, {"q": ["c"], "score": [0.5]}, "eval.json")
        call(mlflow.log_table, {"q": ["x"]}, "bad.txt")
    call(mlflow.load_table, "eval.json", run_ids=[run.info.run_id])
    call(mlflow.load_table, "missing.json", run_ids=[run.info.run_id])


@scenario(cases={"none": None, "plain": "model", "nested": "a/b", "trailing": "images/"})
def get_artifact_uri(mlflow, call, path):
    with mlflow.start_run():
        call(mlflow.get_artifact_uri, path)


@scenario
def get_artifact_uri_without_run(mlflow, call):
    call(mlflow.get_artifact_uri)
    call(mlflow.active_run)


@scenario(cases={"root": None, "folder": "folder", "file": "folder/summary.md", "missing": "no"})
def list_artifacts_paths(mlflow, call, path):
    root = _inputs()
    with mlflow.start_run() as run:
        mlflow.log_artifacts(root)
    _tree(mlflow, call, run.info.run_id, path)


@scenario(cases={"file": "folder/summary.md", "folder": "folder", "root": "", "missing": "nope"})
def download_artifacts(mlflow, call, path):
    root = _inputs()
    with mlflow.start_run() as run:
        mlflow.log_artifacts(root)
    target = os.path.join(os.getcwd(), "downloaded")
    os.makedirs(target)
    local = call(mlflow.MlflowClient().download_artifacts, run.info.run_id, path, dst_path=target)
    if local is not None:
        call.note("downloaded", sorted(os.listdir(target)))


@scenario
def client_log_artifact_and_text(mlflow, call):
    root = _inputs()
    client = mlflow.MlflowClient()
    run = client.create_run("0")
    call(client.log_artifact, run.info.run_id, os.path.join(root, "model.bin"), "m")
    call(client.log_text, run.info.run_id, "t", "notes/n.txt")
    call(client.log_dict, run.info.run_id, {"a": 1}, "d.json")
    call(client.log_artifacts, run.info.run_id, os.path.join(root, "folder"))
    _tree(mlflow, call, run.info.run_id)


@scenario
def log_table_with_images_in_a_dataframe(mlflow, call):
    import numpy as np
    import pandas as pd

    pixels = np.zeros((4, 4, 3), dtype=np.uint8)
    frame = pd.DataFrame({"name": ["a", "b"], "image": [mlflow.Image(pixels)] * 2})
    with mlflow.start_run():
        call(mlflow.log_table, frame, "images.json")
    # What the caller's DataFrame holds afterwards (file names are random: only their shape).
    call(
        lambda: [
            sorted(cell) if isinstance(cell, dict) else type(cell).__name__
            for cell in frame["image"]
        ]
    )
