"""Differences from MLflow that fastflow keeps on purpose. Each has a title (the README's
section "Where fastflow differs from MLflow" lists exactly these titles), the reason, and a
``reconcile`` that removes exactly that difference from two normalised snapshots, so that a
scenario marked with it must agree on everything else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class OnPurpose:
    title: str
    reason: str
    reconcile: Callable[[dict, dict], tuple[dict, dict]]


ON_PURPOSE: dict[str, OnPurpose] = {}


def _blob_integers(value):
    """MLflow's sqlite3 stores a numpy integer as its 8 raw bytes; read them as the integer."""
    if isinstance(value, bytes) and len(value) == 8:
        return int.from_bytes(value, "little", signed=True)
    if isinstance(value, dict):
        if set(value) == {"bytes"} and len(value["bytes"]) == 16:
            return int.from_bytes(bytes.fromhex(value["bytes"]), "little", signed=True)
        return {k: _blob_integers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_blob_integers(v) for v in value]
    return value


ON_PURPOSE["numpy-integers"] = OnPurpose(
    title="numpy integers as steps and timestamps are stored as integers",
    reason=(
        "MLflow 3.17.2 hands numpy.int64 steps and timestamps to sqlite3 unconverted, which "
        "stores their 8 raw bytes as a BLOB; get_metric_history then returns bytes and SQL "
        "ordering by step breaks. fastflow stores the integer."
    ),
    reconcile=lambda ours, theirs: (ours, _blob_integers(theirs)),
)
