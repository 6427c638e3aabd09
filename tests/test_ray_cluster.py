"""A two-node Ray cluster on one machine (``ray.cluster_utils.Cluster``): with the default
``FASTFLOW_RAY_FUNNEL=auto``, tasks on the driver's node open the store and tasks on the
other node log through the funnel actor. The cluster runs in a child process, beside any
Ray instance the other tests started."""

import json
import subprocess
import sys

_DRIVER = """
import json, sys
import ray
from ray.cluster_utils import Cluster
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
import fastflow as mlflow

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
cluster.add_node(num_cpus=1)
ray.init(address=cluster.address, log_to_driver=False)
cluster.wait_for_nodes()
mlflow.set_tracking_uri(sys.argv[1])


@ray.remote(num_cpus=1)
def work(points):
    import fastflow as mlflow

    with mlflow.start_run(nested=True) as run:
        mlflow.log_param("node", ray.get_runtime_context().get_node_id())
        for step in range(points):
            mlflow.log_metric("x", float(step), step=step)
        return run.info.run_id, repr(mlflow.MlflowClient()._tracker)


driver_node = ray.get_runtime_context().get_node_id()
nodes = [node["NodeID"] for node in ray.nodes() if node["Alive"]]
with mlflow.start_run() as parent:
    placed = [
        work.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
        for node in nodes
    ]
    results = ray.get([task.remote(10_000) for task in placed])
print(json.dumps({
    "parent": parent.info.run_id,
    "driver_node": driver_node,
    "runs": [{"run_id": r, "tracker": t, "node": n} for (r, t), n in zip(results, nodes)],
}))
ray.shutdown()
cluster.shutdown()
"""


def test_workers_on_other_nodes_use_the_funnel(db_uri, mlflow):
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER, db_uri],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(report["runs"]) == 2
    oracle = mlflow.MlflowClient(tracking_uri=db_uri)
    for entry in report["runs"]:
        on_driver_node = entry["node"] == report["driver_node"]
        assert entry["tracker"].startswith("Tracker" if on_driver_node else "FunnelTracker")
        run = oracle.get_run(entry["run_id"])
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == report["parent"]
        assert run.data.params["node"] == entry["node"]
        assert sorted(m.step for m in oracle.get_metric_history(entry["run_id"], "x")) == list(
            range(10_000)
        )
