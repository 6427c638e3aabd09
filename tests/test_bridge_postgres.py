"""A `postgresql://` tracking URI, which fastflow does not serve itself: with MLflow
installed every call works through MLflow, and a one-time notice says that fastflow's fast
path is off for that URI. The test starts a real PostgreSQL (initdb, pg_ctl) on 127.0.0.1;
the same script runs after `import fastflow as mlflow` and with MLflow alone, and real
MLflow reads both back from the same database."""

import glob
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from remote_server import free_port

SCRIPT = r"""
import json, sys

variant, uri = sys.argv[1], sys.argv[2]
if variant == "fastflow":
    import fastflow as mlflow
else:
    import mlflow

from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

mlflow.set_tracking_uri(uri)
mlflow.set_experiment(f"pg-{variant}")
run = mlflow.start_run(run_name="pg", tags={"db": "postgresql"})
mlflow.log_param("C", 0.5)
mlflow.log_params({"max_iter": 200})
for step in range(5):
    mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
mlflow.log_metrics({"a": 1.0, "b": 2.0}, step=5)
mlflow.set_tag("stage", "dev")
X, y = load_iris(return_X_y=True)
model = LogisticRegression(C=0.5, max_iter=200).fit(X, y)
info = mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
mlflow.MlflowClient().log_metric(run.info.run_id, "client", 3.0, step=1)
mlflow.end_run()

assert mlflow.active_run() is None
assert mlflow.get_run(run.info.run_id).info.status == "FINISHED"
found = mlflow.search_runs(experiment_names=[f"pg-{variant}"], output_format="list")
assert [r.info.run_id for r in found] == [run.info.run_id]
import mlflow as real

assert real.get_tracking_uri() == uri
print("RESULT " + json.dumps({"run": run.info.run_id, "model_id": info.model_id}))
"""


def _postgres_bin():
    """The directory of initdb, pg_ctl and postgres: on PATH, or Debian's versioned one."""
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(os.path.realpath(found))
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(re.search(r"/(\d+)/bin/", p).group(1)),
    )
    assert candidates, "PostgreSQL is not installed (.ci/run installs it)"
    return os.path.dirname(candidates[-1])


def _server_user():
    """PostgreSQL refuses to run as root: as root, run it as `postgres` (or `nobody`)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    raise AssertionError("no unprivileged user to run PostgreSQL as")


class Postgres:
    def __init__(self, directory):
        self.bin = _postgres_bin()
        self.user = _server_user()
        self.base = directory
        self.data = os.path.join(directory, "data")
        self.sockets = os.path.join(directory, "sockets")
        self.port = free_port()
        os.makedirs(self.sockets)
        if self.user is not None:
            for path in (directory, self.sockets):
                os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def _run(self, *args, timeout=120):
        as_user = {}
        if self.user is not None:
            as_user = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        done = subprocess.run(
            [os.path.join(self.bin, args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.base,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
            **as_user,
        )
        assert done.returncode == 0, f"{args[0]} failed:\n{done.stdout}\n{done.stderr}"

    def start(self):
        self._run(
            "initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--no-locale", "--no-sync",
        )  # fmt: skip
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -F"
        log = os.path.join(self.base, "server.log")
        self._run("pg_ctl", "-D", self.data, "-l", log, "-o", options, "-w", "-t", "60", "start")
        return self

    def stop(self):
        self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "60", "stop")

    def uri(self, database):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name):
        import sqlalchemy

        engine = sqlalchemy.create_engine(self.uri("postgres"), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
        finally:
            engine.dispose()
        return self.uri(name)


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    # As root, the server's user must reach its directory: pytest's are private to root.
    if _server_user() is None:
        directory = str(tmp_path_factory.mktemp("postgres"))
    else:
        directory = tempfile.mkdtemp(prefix="fastflow-pg-")
    server = Postgres(directory).start()
    try:
        yield server
    finally:
        server.stop()
        if _server_user() is not None:
            shutil.rmtree(directory, ignore_errors=True)


def _environment(spool):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "FASTFLOW_"))}
    env["FASTFLOW_SPOOL_DIR"] = str(spool)
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    return env


@pytest.fixture(scope="module")
def results(postgres, tmp_path_factory, mlflow):
    uri = postgres.create_database("fastflow_bridge")
    # MLflow creates its tables once, before two processes could race to.
    mlflow.MlflowClient(tracking_uri=uri).search_experiments()
    directory = tmp_path_factory.mktemp("bridge-postgres")
    script = directory / "scenario.py"
    script.write_text(SCRIPT)
    started = {}
    for variant in ("fastflow", "mlflow"):
        home = directory / variant
        home.mkdir()
        started[variant] = subprocess.Popen(
            [sys.executable, str(script), variant, uri],
            cwd=home,
            env=_environment(home / "spool"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    deadline = time.monotonic() + 300
    out = {"uri": uri}
    try:
        for variant, process in started.items():
            stdout, stderr = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            lines = [x for x in stdout.splitlines() if x.startswith("RESULT ")]
            out[variant] = json.loads(lines[-1][len("RESULT ") :]) if lines else {}
            out[variant].update(returncode=process.returncode, stderr=stderr)
    finally:
        for process in started.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    return out


def _finished(results, variant):
    """What the variant's script printed, once it ran to its end."""
    got = results[variant]
    assert got["returncode"] == 0, f"{variant} variant failed:\n{got['stderr'][-6000:]}"
    return got


def _run_view(oracle, run_id):
    run = oracle.get_run(run_id)
    tags = {
        k: v
        for k, v in run.data.tags.items()
        if not k.startswith("mlflow.source.") and k != "mlflow.user"
    }
    return {
        "status": run.info.status,
        "name": run.info.run_name,
        "params": run.data.params,
        "tags": tags,
        "metrics": {
            k: sorted((m.step, m.value) for m in oracle.get_metric_history(run_id, k))
            for k in run.data.metrics
        },
        "outputs": len(run.outputs.model_outputs),
    }


def test_every_call_works_through_mlflow_on_postgresql(results, mlflow):
    got = _finished(results, "fastflow")
    oracle = mlflow.MlflowClient(tracking_uri=results["uri"])
    view = _run_view(oracle, got["run"])
    assert view["status"] == "FINISHED"
    assert view["params"] == {"C": "0.5", "max_iter": "200"}
    assert view["tags"]["db"] == "postgresql" and view["tags"]["stage"] == "dev"
    assert view["metrics"]["loss"] == [(s, 1.0 / (s + 1)) for s in range(5)]
    assert view["metrics"]["client"] == [(1, 3.0)]
    model = oracle.get_logged_model(got["model_id"])
    assert model.source_run_id == got["run"]
    assert model.status == "READY"
    assert ("loss", 0, 1.0) in {(m.key, m.step, m.value) for m in model.metrics}


def test_a_one_time_notice_says_the_fast_path_is_off(results):
    _finished(results, "mlflow")
    stderr = _finished(results, "fastflow")["stderr"]
    notices = [line for line in stderr.splitlines() if "fast path" in line.lower()]
    # Once for the URI, however many calls (a warning may echo its source line too), naming
    # the store it is about.
    assert 1 <= len(notices) <= 2, stderr[-3000:]
    assert any("fastflow_bridge" in line for line in notices), notices
    assert "fast path" not in results["mlflow"]["stderr"].lower()


def test_same_run_and_model_as_mlflow(results, mlflow):
    expected, got = _finished(results, "mlflow"), _finished(results, "fastflow")
    oracle = mlflow.MlflowClient(tracking_uri=results["uri"])
    assert _run_view(oracle, got["run"]) == _run_view(oracle, expected["run"])

    def model_view(variant):
        model = oracle.get_logged_model(results[variant]["model_id"])
        metrics = sorted((m.key, m.step, m.value) for m in model.metrics)
        return model.name, model.status, sorted(model.params.items()), metrics

    assert model_view("fastflow") == model_view("mlflow")
