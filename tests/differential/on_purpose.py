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
