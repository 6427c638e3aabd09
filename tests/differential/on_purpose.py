"""Differences from MLflow that fastflow keeps on purpose. Each has a title (the README's
section "Where fastflow differs from MLflow" lists exactly these titles), the reason, and a
``reconcile`` that removes exactly that difference from two normalised snapshots, so that a
scenario marked with it must agree on everything else."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class OnPurpose:
    title: str
    reason: str
    reconcile: Callable[[dict, dict], tuple[dict, dict]]
    # Shown wherever a scenario meets it (a returned type, say), not by marked scenarios:
    # reconciled in every scenario, which then counts as differing on purpose.
    everywhere: bool = False


ON_PURPOSE: dict[str, OnPurpose] = {}


def _from_blob(raw: bytes):
    """The number a numpy scalar's raw bytes hold: 8 bytes an int64, 4 bytes a float32."""
    if len(raw) == 8:
        return int.from_bytes(raw, "little", signed=True)
    if len(raw) == 4:
        return struct.unpack("<f", raw)[0]
    return raw


_KEEP = object()


def _rewrite(value, replace):
    """``value`` with each part that ``replace`` maps to something (not ``_KEEP``) replaced,
    through nested dicts and lists."""
    replaced = replace(value)
    if replaced is not _KEEP:
        return replaced
    if isinstance(value, dict):
        return {k: _rewrite(v, replace) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite(v, replace) for v in value]
    return value


def _blob_number(value):
    """MLflow's sqlite3 stores a numpy scalar as its raw bytes; read them as the number."""
    if isinstance(value, bytes) and len(value) in (4, 8):
        return _from_blob(value)
    if isinstance(value, dict) and set(value) == {"bytes"} and len(value["bytes"]) in (8, 16):
        return _from_blob(bytes.fromhex(value["bytes"]))
    return _KEEP


ON_PURPOSE["numpy-integers"] = OnPurpose(
    title="numpy numbers as steps and timestamps are stored as numbers",
    reason=(
        "MLflow 3.17.2 hands numpy.int64 or float32 steps and timestamps to sqlite3 "
        "unconverted, which stores their raw bytes as a BLOB; get_metric_history then returns "
        "bytes and SQL ordering by step breaks. fastflow stores the number."
    ),
    reconcile=lambda ours, theirs: (ours, _rewrite(theirs, _blob_number)),
)


_FROZEN_MS = 1_700_000_000_000


def _frozen_clock_as_now(value):
    """A timestamp MLflow took from a patched ``time.time`` reads as the time the scenario ran."""
    return "<now>" if value == _FROZEN_MS and not isinstance(value, bool) else _KEEP


ON_PURPOSE["clock"] = OnPurpose(
    title="metric timestamps come from the system clock, not from `time.time`",
    reason=(
        "fastflow takes a point's timestamp in Rust when the call is made, without a call "
        "back into Python; a patched time.time (freezegun, a test's monkeypatch) changes "
        "MLflow's metric timestamps and not fastflow's."
    ),
    reconcile=lambda ours, theirs: (
        _rewrite(ours, _frozen_clock_as_now),
        _rewrite(theirs, _frozen_clock_as_now),
    ),
)


def _without_points(snapshot):
    tables = dict(snapshot["tables"])
    for name in ("metrics", "latest_metrics"):
        if name in tables:
            tables[name] = {**tables[name], "rows": []}
    return {**snapshot, "tables": tables}


ON_PURPOSE["written-behind"] = OnPurpose(
    title="metrics are written behind the call",
    reason=(
        "log_metric returns once the point is queued; the writer thread commits within "
        "100 ms, and flush(), end_run() and exit make everything durable. A process killed "
        "in between leaves its last points in its spool, delivered by the next process that "
        "opens the store (MLflow commits each call before returning, at about 5 ms a call)."
    ),
    reconcile=lambda ours, theirs: (_without_points(ours), _without_points(theirs)),
)


_BYTES_TAG_REFUSAL = "stores tag values as text"


def _bytes_tags_set_aside(ours, theirs):
    """The call fastflow refused and MLflow took, and the BLOB row MLflow wrote for it."""
    ours, theirs = dict(ours), dict(theirs)
    ours_calls, their_calls = list(ours["observations"]), list(theirs["observations"])
    for i, entry in enumerate(ours_calls):
        if _BYTES_TAG_REFUSAL in str(entry.get("raised", {}).get("message", "")):
            kept = {"call": entry["call"], "bytes tag value": "set aside"}
            ours_calls[i] = kept
            if i < len(their_calls):
                their_calls[i] = kept
    ours["observations"], theirs["observations"] = ours_calls, their_calls
    tables = dict(theirs["tables"])
    if "tags" in tables:
        rows = [r for r in tables["tags"]["rows"] if not isinstance(r[1], (dict, bytes))]
        tables["tags"] = {**tables["tags"], "rows": rows}
    theirs["tables"] = tables
    return ours, theirs


ON_PURPOSE["bytes-tags"] = OnPurpose(
    title="a bytes tag value is refused",
    reason=(
        "MLflow's log_batch stores a bytes tag value as a BLOB, which its own get_run then "
        "returns as bytes and its UI cannot show; fastflow raises an MlflowException naming "
        "the tag."
    ),
    reconcile=_bytes_tags_set_aside,
)


def _history_as_list(value):
    if isinstance(value, dict) and set(value) == {"MetricHistory"}:
        return value["MetricHistory"]
    return _KEEP


ON_PURPOSE["lazy-history"] = OnPurpose(
    title="get_metric_history returns a lazy sequence of Metric, not a list",
    reason=(
        "A history of a million points would make a million objects before the caller "
        "looks at one. fastflow's MetricHistory keeps the points in packed columns and makes "
        "each Metric when it is indexed or iterated; it has every list operation, equals the "
        "list MLflow returns and pickles as one, but `type()` and `isinstance(h, list)` tell "
        "it apart."
    ),
    reconcile=lambda ours, theirs: (_rewrite(ours, _history_as_list), theirs),
    everywhere=True,
)


def reconcile_everywhere(ours: dict, theirs: dict) -> tuple[dict, dict, list]:
    """Both snapshots with every difference kept everywhere removed, and the names of those
    that removed something."""
    shown = []
    for name, difference in ON_PURPOSE.items():
        if not difference.everywhere:
            continue
        reconciled = difference.reconcile(ours, theirs)
        if reconciled != (ours, theirs):
            shown.append(name)
            ours, theirs = reconciled
    return ours, theirs, shown
