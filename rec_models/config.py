"""Typed settings for one nightly run, built once from DAG params or CLI flags and validated."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class MFConfig:
    """Funk SVD trained as a neural net: embeddings + biases, dot product, BCE on sampled negatives."""

    dim: int = 32
    epochs: int = 40
    batch_size: int = 2048
    learning_rate: float = 0.02
    negatives: int = 4
    l2: float = 1e-2
    # Stop when validation NDCG@10 has not improved for this many epochs.
    patience: int = 5

    def __post_init__(self) -> None:
        _require(self.dim >= 1, "mf.dim must be >= 1")
        _require(self.epochs >= 1, "mf.epochs must be >= 1")
        _require(self.batch_size >= 1, "mf.batch_size must be >= 1")
        _require(self.learning_rate > 0, "mf.learning_rate must be > 0")
        _require(self.negatives >= 1, "mf.negatives must be >= 1")
        _require(self.l2 >= 0, "mf.l2 must be >= 0")
        _require(self.patience >= 1, "mf.patience must be >= 1")


@dataclass(frozen=True)
class PipelineConfig:
    """Everything one nightly run needs to know; the DAG's params map 1:1 onto these fields."""

    top_n: int = 20
    seed: int = 42
    # Views on the last `holdout_days` days before the interval end are held out for evaluation.
    holdout_days: int = 1
    # Only views and visits this many days before the interval end are read.
    history_days: int = 180
    # Publish only if holdout NDCG@10 is not worse than the published run's by more than this.
    quality_tolerance: float = 0.02
    # Fail before training when more than this share of a source's rows is rejected.
    max_rejected_share: float = 0.2
    # Recommend already-watched videos to a user (off by default: a user rarely wants a rerun).
    include_seen: bool = False
    # Published runs kept per model; older partitions are pruned after a successful publish.
    keep_published_runs: int = 7
    torch_threads: int = 1
    run_root: str = field(default_factory=lambda: os.environ.get("RECS_RUN_ROOT", str(PROJECT_ROOT / "var" / "runs")))
    mf: MFConfig = field(default_factory=MFConfig)

    def __post_init__(self) -> None:
        _require(1 <= self.top_n <= 1000, "top_n must be between 1 and 1000")
        _require(self.holdout_days >= 1, "holdout_days must be >= 1")
        _require(self.history_days > 2 * self.holdout_days, "history_days must exceed twice holdout_days")
        _require(0 <= self.quality_tolerance <= 1, "quality_tolerance must be in [0, 1]")
        _require(0 <= self.max_rejected_share <= 1, "max_rejected_share must be in [0, 1]")
        _require(self.keep_published_runs >= 1, "keep_published_runs must be >= 1")
        _require(self.torch_threads >= 1, "torch_threads must be >= 1")

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> "PipelineConfig":
        """Build from a flat dict (DAG params); nested model settings use a prefix, e.g. ``mf_dim``."""
        params = dict(params or {})
        mf_kwargs = {f.name: params.pop(f"mf_{f.name}") for f in fields(MFConfig) if f"mf_{f.name}" in params}
        known = {f.name for f in fields(cls)} - {"mf"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"unknown pipeline params: {', '.join(unknown)}")
        kwargs = {k: _coerce(cls, k, v) for k, v in params.items()}
        mf = MFConfig(**{k: _coerce(MFConfig, k, v) for k, v in mf_kwargs.items()})
        return cls(mf=mf, **kwargs)

    def to_params(self) -> dict[str, Any]:
        """The flat form, as stored with each model run."""
        flat = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("mf", "run_root")}
        flat.update({f"mf_{k}": v for k, v in dataclasses.asdict(self.mf).items()})
        return flat


def _coerce(owner: type, name: str, value: Any) -> Any:
    """Params from the UI may arrive as strings; convert to the field's declared type or fail clearly."""
    declared = {f.name: f.type for f in fields(owner)}[name]
    target = {"int": int, "float": float, "bool": bool, "str": str}.get(str(declared), None)
    if target is None:
        return value
    if target is bool and isinstance(value, str):
        if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"param {name} must be a boolean, got {value!r}")
        return value.lower() in ("true", "1", "yes")
    try:
        return target(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"param {name} must be {target.__name__}, got {value!r}") from exc


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)
