"""The funnel: Ray workers that cannot open the driver's store log through a Ray actor.

The actor runs on the driver's node, is owned by the driver (it ends with the job) and holds
the store with fastflow's own writer. In a worker, logging calls cost what they cost with a
local store: the records go into an outbox engine in Rust, and one shipping thread sends them
to the actor in packets (run ids, key names, 32 bytes per point), and the actor commits each
packet before it answers. Run and param operations are actor calls. ``flush()`` and
``end_run()`` return once everything the worker logged before them is committed.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import sys
import threading
import time

from fastflow import _fastflow
from fastflow.exceptions import MlflowException

_IDLE_SECONDS = 1.0
_INTERNAL_ERROR = "INTERNAL_ERROR"

_driver_funnels: dict = {}
FUNNEL_ENV = "FASTFLOW_RAY_FUNNEL"


def funnel_mode() -> str:
    mode = os.environ.get(FUNNEL_ENV, "auto").strip().lower() or "auto"
    if mode not in ("auto", "always", "never"):
        raise ValueError(f"{FUNNEL_ENV} must be auto, always or never, not {mode!r}")
    return mode


class FunnelActor:
    """The store owner on the driver's node. Answers with data or MLflow's (message, code)."""

    def __init__(self, tracking_uri, artifact_root):
        self._tracker = _fastflow.Tracker(tracking_uri, artifact_root)

    def call(self, name, args):
        try:
            return ("ok", getattr(self._tracker, name)(*args))
        except MlflowException as e:
            return ("error", e.message, e.error_code)

    def write(self, run_ids, keys, records):
        # Acknowledged means committed: the actor dies with the job (or at ray.shutdown)
        # and must never hold points a worker believes delivered.
        try:
            self._tracker.log_packed(run_ids, keys, records)
            self._tracker.flush()
        except MlflowException as e:
            return (e.message, e.error_code)
        return None

    def flush(self):
        return self.write([], [], b"")


def _actor_name(ray, uri) -> str:
    store = hashlib.sha1(uri.encode()).hexdigest()[:12]
    return f"fastflow-funnel-{ray.get_runtime_context().get_job_id()}-{store}"


def driver_funnel(ray, context):
    """The funnel a driver offers its workers as ``{"actor", "all_nodes"}``, or None.

    ``FASTFLOW_RAY_FUNNEL``: ``never``; ``always`` (every worker logs through the actor);
    ``auto`` (default: only workers on other nodes do, so the actor exists only on clusters
    of more than one node, and only for a SQLite store they could not open).
    """
    mode = funnel_mode()
    uri = context["tracking_uri"]
    if mode == "never" or not uri.startswith("sqlite:"):
        return None
    if mode == "auto" and sum(1 for node in ray.nodes() if node.get("Alive")) < 2:
        return None
    name = _actor_name(ray, uri)
    key = (name, uri)
    if key not in _driver_funnels:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        handle = (
            ray.remote(FunnelActor)
            .options(
                name=name,
                get_if_exists=True,
                num_cpus=0,
                max_restarts=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(
                    node_id=context["driver_node_id"], soft=False
                ),
            )
            .remote(uri, context["artifact_root"])
        )
        _driver_funnels[key] = handle
        # Registered after ray.init, so it runs before Ray's own shutdown at exit.
        atexit.register(_flush_at_exit, handle)
    return {"actor": name, "all_nodes": mode == "always"}


def _flush_at_exit(handle) -> None:
    try:
        import ray

        if ray.is_initialized():
            outcome = ray.get(handle.flush.remote(), timeout=60)
            if outcome is not None:
                print(f"fastflow: the funnel could not write: {outcome[0]}", file=sys.stderr)
    except Exception as e:
        print(f"fastflow: could not flush the funnel at exit: {e}", file=sys.stderr)


def worker_tracker(uri, context):
    """A tracker that funnels to the driver, if this worker should use one for ``uri``."""
    funnel = context.get("funnel")
    if not funnel or uri != context.get("tracking_uri"):
        return None
    import ray

    if not funnel["all_nodes"]:
        if ray.get_runtime_context().get_node_id() == context.get("driver_node_id"):
            return None
    return FunnelTracker(uri, ray.get_actor(funnel["actor"]))


class FunnelTracker:
    """What ``_fastflow.Tracker`` offers, for a store another process holds."""

    def __init__(self, uri, actor):
        self.uri = uri
        self._actor = actor
        self._outbox = _fastflow.Outbox()
        threading.Thread(
            target=_ship_forever,
            args=(self._outbox, actor),
            name="fastflow-funnel",
            daemon=True,
        ).start()

    @property
    def path(self):
        return self.uri

    def __repr__(self):
        return f"FunnelTracker({self.uri!r})"

    def _call(self, name, *args):
        import ray

        try:
            answer = ray.get(self._actor.call.remote(name, args))
        except ray.exceptions.RayError as e:
            raise MlflowException(
                f"fastflow's funnel actor could not be reached: {e}", error_code=_INTERNAL_ERROR
            ) from None
        if answer[0] == "error":
            raise MlflowException(answer[1], error_code=answer[2])
        return answer[1]

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)

        def operation(*args):
            return self._call(name, *args)

        operation.__name__ = name
        return operation

    def _ensure_run(self, run_id):
        """Registers a run this worker did not create, as the store sees it."""
        if not self._outbox.is_registered(run_id):
            info = self._call("get_run", run_id)[0]
            self._outbox.register_run(run_id, info[8] == "active")

    # Operations whose outcome depends on points logged before them wait for those points.

    def flush(self):
        self._outbox.flush()

    # The actor commits every packet durably before it answers, so visible means flushed.
    make_visible = flush

    def create_run(self, *args):
        row = self._call("create_run", *args)
        self._outbox.register_run(row[0][0], True)
        return row

    def get_run(self, run_id, with_io=False):
        self.flush()
        return self._call("get_run", run_id, with_io)

    def update_run(self, *args):
        self.flush()
        return self._call("update_run", *args)

    def get_metric_history(self, run_id, key):
        self.flush()
        return self._call("get_metric_history", run_id, key)

    def delete_run(self, run_id):
        self.flush()
        self._call("delete_run", run_id)
        self._outbox.register_run(run_id, False)

    def restore_run(self, run_id):
        self._call("restore_run", run_id)
        self._outbox.register_run(run_id, True)

    def log_metric(self, run_id, key, value, timestamp=None, step=None, synchronous=None):
        self._ensure_run(run_id)
        self._outbox.log_metric(run_id, key, value, timestamp, step)
        if synchronous:
            self.flush()

    def log_batch(self, run_id, metrics, params, tags, synchronous=None):
        _fastflow._validate_batch_limits(len(metrics), len(params), len(tags))
        self._ensure_run(run_id)
        if params or tags:
            # As in MLflow, a bad metric refuses the batch before any param is written.
            self._outbox.log_metrics(run_id, metrics, check_only=True)
            self._call("log_batch", run_id, [], params, tags)
        if metrics:
            self._outbox.log_metrics(run_id, metrics)
        if synchronous:
            self.flush()


def _ship_forever(outbox, actor) -> None:
    while True:
        packet = outbox.next_packet(_IDLE_SECONDS)
        if packet is None:
            continue
        try:
            outcome = _deliver(packet, actor)
        except BaseException as e:  # the thread must live on: flush() waits on it
            outcome = (f"fastflow's funnel could not ship metric points: {e!r}", _INTERNAL_ERROR)
        packet.settle(outcome)


def _deliver(packet, actor):
    """Sends one packet, retrying while the actor is briefly unavailable."""
    import ray

    delay = 0.05
    while True:
        try:
            return ray.get(actor.write.remote(packet.run_ids, packet.keys, packet.records))
        except ray.exceptions.ActorUnavailableError:
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        except Exception as e:
            return (
                f"fastflow's funnel actor could not take {len(packet)} metric points: {e}",
                _INTERNAL_ERROR,
            )
