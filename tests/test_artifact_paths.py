"""Artifact paths, side by side with MLflow 3.17.2: the same script runs under ``import
mlflow`` and under ``import fastflow as mlflow``, each in a fresh interpreter and a fresh
directory with a SQLite store and local artifacts, and every call must end the same way:
the same return value, or the same exception type, error code and message, and the same
files in the run's artifact directory.

The paths cover what MLflow normalises (``./x``, ``x/../y``, trailing slashes), what it
refuses (``..``, absolute paths, its reserved temporary names), and names with spaces,
``+``, ``#``, ``%`` and non-ASCII characters, the empty string and None.
"""

import json
import re

import pytest
from conftest import run_python

_SCENARIO = r"""
import io, json, os, sys, tempfile, warnings, logging
warnings.simplefilter("ignore")
logging.disable(logging.CRITICAL)
os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
module, out = sys.argv[1], sys.argv[2]
if module == "mlflow":
    import mlflow
else:
    import fastflow as mlflow
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

base = os.getcwd()
mlflow.set_tracking_uri(f"sqlite:///{base}/store.db")
client = mlflow.MlflowClient()
src = os.path.join(base, "src")
os.makedirs(os.path.join(src, "tree", "sub dir"))
for name, text in (("f.txt", "file"), ("tree/a.txt", "a"), ("tree/sub dir/b+c.txt", "bc")):
    with open(os.path.join(src, name), "w") as f:
        f.write(text)
os.utime(os.path.join(src, "f.txt"), (1_000_000_000, 1_000_000_000))
os.chmod(os.path.join(src, "f.txt"), 0o640)


def tree(root):
    found = {}
    for here, dirs, files in os.walk(root):
        for d in dirs:
            if not os.listdir(os.path.join(here, d)):
                found[os.path.relpath(os.path.join(here, d), root) + "/"] = "<empty>"
        for name in files:
            with open(os.path.join(here, name), "rb") as f:
                data = f.read()
            short = len(data) < 40 and data.isascii()
            key = os.path.relpath(os.path.join(here, name), root)
            found[key] = data.decode() if short else "<binary>"
    return found


def shown(value, run):
    if isinstance(value, str):
        for real, placeholder in (
            (run.info.artifact_uri, "<artifacts>"),
            (base, "<base>"),
            (run.info.run_id, "<run>"),
        ):
            value = value.replace(real, placeholder)
        return value
    if isinstance(value, (list, tuple)):
        return [shown(v, run) for v in value]
    if hasattr(value, "is_dir"):
        return ["FileInfo", value.path, value.is_dir, value.file_size]
    return repr(value)


results = {}


def case(name, call, before=None):
    with mlflow.start_run() as run:
        if before:
            before(run)
        try:
            outcome = {"returned": shown(call(run), run)}
        except Exception as e:
            message = str(getattr(e, "message", e))
            outcome = {
                "raised": type(e).__name__,
                "code": getattr(e, "error_code", None),
                "message": shown(message, run),
            }
        root = run.info.artifact_uri
        outcome["stored"] = tree(root) if os.path.isdir(root) else None
    results[name] = outcome


def some_artifacts(run):
    mlflow.log_artifacts(os.path.join(src, "tree"))
    mlflow.log_artifacts(os.path.join(src, "tree"), "dir")
    mlflow.log_text("u", "ünï/e.txt")


def landed(path):
    return [path, tree(path) if os.path.isdir(path) else open(path).read()]


def fresh_dir(run, name):
    return os.path.join(base, name, run.info.run_id)


file_, folder = os.path.join(src, "f.txt"), os.path.join(src, "tree")
group = sys.argv[3]
if group == "log":
    for p in PATHS:
        k = repr(p)
        case(f"log_artifact(file, {k})", lambda run: mlflow.log_artifact(file_, p))
        case(f"log_artifact(dir, {k})", lambda run: mlflow.log_artifact(folder, p))
        case(
            f"client.log_artifact(dir, {k})",
            lambda run: client.log_artifact(run.info.run_id, folder, p),
        )
        case(
            f"client.log_artifacts(dir, {k})",
            lambda run: client.log_artifacts(run.info.run_id, folder, p),
        )
        case(f"get_artifact_uri({k})", lambda run: mlflow.get_artifact_uri(p))
    case("log_artifact(missing)", lambda run: mlflow.log_artifact(os.path.join(src, "no.txt")))
    case("log_artifact(missing, 'x')", lambda run: mlflow.log_artifact(src + "/no.txt", "x"))
    case("log_artifacts(a file)", lambda run: mlflow.log_artifacts(file_, "x"))
    case("log_artifacts(missing)", lambda run: mlflow.log_artifacts(src + "/none", "x"))
    case("log_artifact(dir with slash)", lambda run: mlflow.log_artifact(folder + "/", "x"))

    def copied_stat(run):
        mlflow.log_artifact(file_, "kept")
        stored = os.stat(os.path.join(run.info.artifact_uri, "kept", "f.txt"))
        return [oct(stored.st_mode), stored.st_mtime_ns]

    case("log_artifact keeps mode and times", copied_stat)
elif group == "read":
    for p in PATHS:
        k = repr(p)
        case(
            f"client.list_artifacts({k})",
            lambda run: client.list_artifacts(run.info.run_id, p),
            some_artifacts,
        )
        case(
            f"artifacts.list_artifacts(run_id, {k})",
            lambda run: mlflow.artifacts.list_artifacts(run_id=run.info.run_id, artifact_path=p),
            some_artifacts,
        )

        def into_existing(run):
            os.makedirs(fresh_dir(run, "dl"))
            return landed(client.download_artifacts(run.info.run_id, p, fresh_dir(run, "dl")))

        case(f"client.download_artifacts({k}, dst)", into_existing, some_artifacts)
        case(
            f"client.download_artifacts({k})",
            lambda run: landed(client.download_artifacts(run.info.run_id, p)),
            some_artifacts,
        )
        case(
            f"artifacts.download_artifacts(run_id, {k}, new dst)",
            lambda run: landed(
                mlflow.artifacts.download_artifacts(
                    run_id=run.info.run_id, artifact_path=p, dst_path=fresh_dir(run, "new")
                )
            ),
            some_artifacts,
        )
    for p in ("", "dir", "dir/a.txt", "a.txt", "missing", "sp ace", "dir/", "dir/."):
        k = repr(p)
        case(
            f"artifacts.list_artifacts(uri + {k})",
            lambda run: mlflow.artifacts.list_artifacts(
                artifact_uri=run.info.artifact_uri + "/" + p
            ),
            some_artifacts,
        )
        case(
            f"artifacts.download_artifacts(uri + {k})",
            lambda run: landed(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=run.info.artifact_uri + "/" + p,
                    dst_path=fresh_dir(run, "by-uri"),
                )
            ),
            some_artifacts,
        )
        case(
            f"artifacts.download_artifacts(runs:/ + {k})",
            lambda run: landed(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=f"runs:/{run.info.run_id}/{p}",
                    dst_path=fresh_dir(run, "by-runs-uri"),
                )
            ),
            some_artifacts,
        )
    case(
        "artifacts.download_artifacts(run_id and uri)",
        lambda run: mlflow.artifacts.download_artifacts(
            artifact_uri=run.info.artifact_uri, run_id=run.info.run_id
        ),
    )
    case(
        "artifacts.download_artifacts(uri and path)",
        lambda run: mlflow.artifacts.download_artifacts(
            artifact_uri=run.info.artifact_uri, artifact_path="a.txt"
        ),
    )
    case(
        "artifacts.load_text(uri)",
        lambda run: mlflow.artifacts.load_text(run.info.artifact_uri + "/ünï/e.txt"),
        some_artifacts,
    )
    case(
        "artifacts.load_dict(not json)",
        lambda run: mlflow.artifacts.load_dict(run.info.artifact_uri + "/a.txt"),
        some_artifacts,
    )
    case(
        "artifacts.load_text(missing)",
        lambda run: mlflow.artifacts.load_text(run.info.artifact_uri + "/missing.txt"),
        some_artifacts,
    )
else:
    figure = plt.figure()
    plt.plot([1, 2])
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    for f in FILES:
        k = repr(f)
        as_ = lambda ext: f.replace(".txt", ext) if f else f
        case(f"log_text({k})", lambda run: mlflow.log_text("t", f))
        case(f"client.log_text({k})", lambda run: client.log_text(run.info.run_id, "t", f))
        case(f"log_dict({k})", lambda run: mlflow.log_dict({"a": 1}, f))
        case(f"log_stream({k})", lambda run: mlflow.log_stream(io.BytesIO(b"s"), f))
        case(f"log_image({k})", lambda run: mlflow.log_image(image, as_(".png")))
        case(f"log_table({k})", lambda run: mlflow.log_table({"a": [1]}, as_(".json")))
        # MLflow saves a figure named ".." next to its temporary directory and then logs
        # that whole parent directory: that case is left out.
        if f != "..":
            case(f"log_figure({k})", lambda run: mlflow.log_figure(figure, as_(".png")))
with open(out, "w") as f:
    json.dump(results, f, ensure_ascii=False)
"""

_PATHS = [
    None,
    "",
    ".",
    "..",
    "./",
    "/",
    "x/",
    "./x",
    "x/..",
    "x/../y",
    "x//y",
    "/x",
    "../x",
    "sp ace",
    "a+b",
    "ünï/çø",
    "a#b",
    "a%20b",
    ".artifact.uploading.q",
]
_FILES = [
    "./f.txt",
    "d/../f.txt",
    "d/./f.txt",
    "d//f.txt",
    "/f.txt",
    "/d/f.txt",
    "../f.txt",
    "d/../../f.txt",
    "d/",
    "",
    ".",
    "..",
    "./",
    " ",
    "sp ace/f i.txt",
    "a+b/c+d.txt",
    "ünï/çø.txt",
    ".artifact.uploading.f.txt",
    None,
]

# Names of temporary directories (tempfile's eight random characters) differ run to run.
_TEMPORARY = re.compile(r"tmp[a-z0-9_]{8}")


def _outcomes(module, group, directory):
    directory.mkdir()
    out = directory / "outcomes.json"
    code = f"PATHS = {_PATHS!r}\nFILES = {_FILES!r}\n" + _SCENARIO
    run_python(f"import os; os.chdir({str(directory)!r})\n" + code, module, out, group)
    return json.loads(_TEMPORARY.sub("<tmp>", out.read_text()))


@pytest.mark.parametrize("group", ["log", "read", "files"])
def test_artifact_paths_end_as_with_mlflow(tmp_path, group):
    theirs = _outcomes("mlflow", group, tmp_path / "mlflow")
    ours = _outcomes("fastflow", group, tmp_path / "fastflow")
    assert list(ours) == list(theirs)
    differing = {name: (ours[name], theirs[name]) for name in theirs if ours[name] != theirs[name]}
    assert not differing, json.dumps(differing, indent=1, ensure_ascii=False)[:20000]


def test_the_brief_cases_are_accepted(tmp_path):
    # The calls that used to be refused, spelled out: MLflow stores them normalised.
    outcomes = _outcomes("fastflow", "files", tmp_path / "files")
    assert outcomes["log_text('./f.txt')"] == {"returned": "None", "stored": {"f.txt": "t"}}
    assert outcomes["log_dict('d/../f.txt')"]["stored"] == {"f.txt": '{\n  "a": 1\n}'}
    logged = _outcomes("fastflow", "log", tmp_path / "log")
    assert logged["get_artifact_uri('x/')"]["returned"] == "<artifacts>/x/"
    assert logged["log_artifact(dir, None)"]["stored"] == {
        "tree/a.txt": "a",
        "tree/sub dir/b+c.txt": "bc",
    }
    assert logged["log_artifact(dir, 'x/')"]["stored"] == {
        "x/tree/a.txt": "a",
        "x/tree/sub dir/b+c.txt": "bc",
    }
