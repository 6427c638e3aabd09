"""The reads MLflow's UI draws its charts from, served by `mlflow server --app-name fastflow`
(the MLflow bridge in the server's worker, its SQLite store fastflow's) and by MLflow's own
server, on copies of one store fastflow wrote: the same JSON, byte for byte, errors too.

The store's histories are long and awkward: irregular and repeated steps, NaN and infinite
values, points sharing a step and a timestamp, one metric logged at step 0 only."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from remote_server import free_port

ROOT = Path(__file__).resolve().parent.parent

WRITE = r"""
import json, math, random, sys

import fastflow as mlflow

mlflow.set_tracking_uri(sys.argv[1])
rng = random.Random(7)
ids = {}


def awkward(i):
    if i % 997 == 0:
        return math.nan
    if i % 1009 == 0:
        return math.inf
    if i % 1013 == 0:
        return -math.inf
    if i % 50 == 0:
        return 0.0
    return rng.gauss(0.0, 1.0)


with mlflow.start_run(run_name="long") as run:
    ids["long"] = run.info.run_id
    step = 0
    for i in range(100_000):
        step += rng.choice((0, 1, 1, 2, 5))  # repeated and skipped steps
        mlflow.log_metric("loss", awkward(i), step=step, timestamp=1_000 + (i * 7919) % 50_000)
    # A NaN beside a 0 and a -inf at one step and timestamp: the stored order breaks the tie.
    for value in (math.nan, 0.0, -math.inf):
        mlflow.log_metric("loss", value, step=step, timestamp=99)
with mlflow.start_run(run_name="medium") as run:
    ids["medium"] = run.info.run_id
    for i in range(20_000):
        mlflow.log_metric("loss", awkward(i), step=3 * i - 30_000, timestamp=25_000 - i)
with mlflow.start_run(run_name="step zero") as run:
    ids["zero"] = run.info.run_id
    for i in range(3_000):
        mlflow.log_metric("loss", awkward(i), timestamp=1_000 + i % 7)
with mlflow.start_run(run_name="other metric") as run:
    ids["other"] = run.info.run_id
    mlflow.log_metric("accuracy", 0.5, step=1)
print("IDS " + json.dumps(ids))
"""


def _entry_points() -> str:
    """pyproject.toml's ``mlflow.app`` entry points, as an installed fastflow lists them."""
    text = (ROOT / "pyproject.toml").read_text()
    section = re.search(
        r'^\[project\.entry-points\."mlflow\.app"\]\n(.*?)(?:\n\[|\Z)', text, re.M | re.S
    )
    lines = [x for x in section.group(1).splitlines() if x.strip() and not x.startswith("#")]
    return "[mlflow.app]\n" + "".join(x.replace('"', "") + "\n" for x in lines)


def _environment(path_entries, bridge: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "FASTFLOW_"))}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["PYTHONPATH"] = os.pathsep.join(
        [*map(str, path_entries), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    if not bridge:
        env["FASTFLOW_MLFLOW_BRIDGE"] = "0"
    return env


def _descendants(pid: int) -> list[int]:
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


class Server:
    def __init__(self, directory: Path, db: Path, bridge: bool, metadata: Path):
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "mlflow", "server"]
        if bridge:
            command += ["--app-name", "fastflow"]
        command += [
            "--backend-store-uri",
            f"sqlite:///{db}",
            "--default-artifact-root",
            str(directory / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        self.process = subprocess.Popen(
            command,
            cwd=directory,
            env=_environment([metadata] if bridge else [], bridge),
            stdout=subprocess.DEVNULL,
            stderr=open(directory / "server.log", "wb"),  # noqa: SIM115
            start_new_session=True,
        )
        self.log = directory / "server.log"

    def wait(self) -> Server:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("mlflow server exited:\n" + self.log.read_text()[-4000:])
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise RuntimeError("mlflow server did not start:\n" + self.log.read_text()[-4000:])

    def loads_fastflow(self) -> bool:
        for pid in [self.process.pid, *_descendants(self.process.pid)]:
            try:
                if "_fastflow." in Path(f"/proc/{pid}/maps").read_text():
                    return True
            except OSError:
                continue
        return False

    def get(self, path: str, params) -> tuple[int, str]:
        url = f"{self.uri}{path}?{urllib.parse.urlencode(params, doseq=True)}"
        try:
            with urllib.request.urlopen(url, timeout=120) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """{"fastflow": the bridged server, "mlflow": MLflow's own}, each on its own copy of the
    store, and the run ids by role."""
    directory = tmp_path_factory.mktemp("ui-sampling")
    written = directory / "written.db"
    script = directory / "write.py"
    script.write_text(WRITE)
    done = subprocess.run(
        [sys.executable, str(script), f"sqlite:///{written}"],
        cwd=directory,
        env=_environment([], bridge=True) | {"FASTFLOW_SPOOL_DIR": str(directory / "spool")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    ids = json.loads([x for x in done.stdout.splitlines() if x.startswith("IDS ")][-1][4:])
    # fastflow's installed metadata, as pip writes it: MLflow finds apps by entry point.
    metadata = directory / "metadata"
    info = metadata / "fastflow-0.0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fastflow\nVersion: 0.0.0\n")
    (info / "entry_points.txt").write_text(_entry_points())
    running = {}
    try:
        for variant in ("fastflow", "mlflow"):
            home = directory / variant
            home.mkdir()
            shutil.copy(written, home / "store.db")
            running[variant] = Server(home, home / "store.db", variant == "fastflow", metadata)
        for server in running.values():
            server.wait()
        yield running, ids
    finally:
        for server in running.values():
            server.stop()


def test_only_the_bridged_server_runs_fastflow(servers):
    running, _ = servers
    assert running["fastflow"].loads_fastflow()
    assert not running["mlflow"].loads_fastflow()


INTERVAL = "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"


def _interval_requests(ids):
    every = [ids["long"], ids["medium"], ids["zero"], ids["other"]]
    requests = [{"run_ids": every, "metric_key": "loss", "max_results": 320}]
    for run_ids, max_results, start, end in (
        (every, 2000, 12_345, 150_000),
        ([ids["long"]], 320, 0, 1_000),
        ([ids["medium"], ids["long"]], 2000, -30_000, -29_000),
        ([ids["zero"], ids["long"], ids["zero"]], 320, 0, 0),
    ):
        requests.append(
            {
                "run_ids": run_ids,
                "metric_key": "loss",
                "max_results": max_results,
                "start_step": start,
                "end_step": end,
            }
        )
    requests += [
        {"run_ids": every, "metric_key": "loss"},  # MLflow's default budget, 2500
        {"run_ids": every, "metric_key": "loss", "max_results": 1},
        {"run_ids": ["no-such-run"], "metric_key": "loss", "max_results": 320},
        {"run_ids": every, "metric_key": "missing", "max_results": 320},
        # MLflow's refusals.
        {"run_ids": every, "metric_key": "loss", "max_results": 0},
        {"run_ids": every, "metric_key": "loss", "max_results": 2501},
        {"run_ids": every, "metric_key": "loss", "start_step": 5},
        {"run_ids": every, "metric_key": "loss", "start_step": 9, "end_step": 5},
        {"run_ids": every, "metric_key": "loss", "start_step": "x", "end_step": 5},
        {"run_ids": every * 26, "metric_key": "loss"},
        {"run_ids": every, "max_results": 320},
        {"metric_key": "loss"},
    ]
    return requests


def _same(servers, path, params):
    running, _ = servers
    with ThreadPoolExecutor(2) as pool:
        asked = pool.submit(running["fastflow"].get, path, params)
        theirs = running["mlflow"].get(path, params)
        ours = asked.result()
    assert ours == theirs, f"{path} {params}: {ours[0]} {ours[1][:300]} != {theirs[1][:300]}"
    return ours


def test_chart_samples_match_mlflow(servers):
    _, ids = servers
    sizes = []
    for params in _interval_requests(ids):
        status, body = _same(servers, INTERVAL, params)
        sizes.append(len(json.loads(body).get("metrics", [])) if status == 200 else -status)
    # The comparison covered real samples, refusals and empty answers.
    assert max(sizes) > 2000 and 0 in sizes and -400 in sizes


def test_histories_and_their_pages_match_mlflow(servers):
    _, ids = servers
    for role in ("medium", "zero", "other"):
        for key in ("loss", "accuracy"):
            _same(
                servers,
                "/api/2.0/mlflow/metrics/get-history",
                {"run_id": ids[role], "metric_key": key},
            )
    # Pages: the first ones, and the last one with what MLflow's token says.
    token, pages = None, 0
    while pages < 2:
        params = {"run_id": ids["long"], "metric_key": "loss", "max_results": 1_000}
        if token:
            params["page_token"] = token
        status, body = _same(servers, "/api/2.0/mlflow/metrics/get-history", params)
        answer = json.loads(body)
        token, pages = answer.get("next_page_token"), pages + 1
        assert token
    for params in (
        {"max_results": 7, "page_token": _token(99_999)},
        {"max_results": 3, "page_token": _token(100_000)},
        {"max_results": 0},
        {"max_results": -2},
        {"page_token": "not a token"},
        {"page_token": _token(0)},
    ):
        _same(
            servers,
            "/api/2.0/mlflow/metrics/get-history",
            {"run_id": ids["long"], "metric_key": "loss", **params},
        )


def _token(offset: int) -> str:
    import base64

    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode()


def test_the_bridge_server_answers_faster(servers):
    """Not a benchmark: the bridged server's sample of 100k points does not take MLflow's
    window-function query's time (a regression back to MLflow's path would)."""
    running, ids = servers
    params = {"run_ids": [ids["long"]], "metric_key": "loss", "max_results": 320}

    def best(server):
        times = []
        for _ in range(2):
            started = time.perf_counter()
            assert server.get(INTERVAL, params)[0] == 200
            times.append(time.perf_counter() - started)
        return min(times)

    assert best(running["fastflow"]) < best(running["mlflow"])
