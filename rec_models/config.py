"""Typed settings for one nightly run, built once from DAG params or CLI flags and validated."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class NeuralConfig:
    """What every model trained by the shared loop needs: size, optimisation and early stopping."""

    prefix: ClassVar[str] = "model"
    dim: int = 32
    epochs: int = 40
    # Examples per step (MF, NCF: positives; two-tower: users); 0 = scaled with the data
    # (rec_models.training.auto_batch_size): small data keeps small steps, 2M views take 16k a step.
    batch_size: int = 0
    learning_rate: float = 0.02
    negatives: int = 4
    l2: float = 1e-2
    # Stop when validation NDCG@10 has not improved for this many epochs; 0 = by the epoch's size
    # (rec_models.training.auto_patience): small data, a short and noisy epoch, waits up to 5 (two-tower:
    # 15) epochs; 100k users, where an epoch is a large step and the best one comes early, wait 2.
    patience: int = 0

    def __post_init__(self) -> None:
        p = self.prefix
        _require(self.dim >= 1, f"{p}.dim must be >= 1")
        _require(self.epochs >= 1, f"{p}.epochs must be >= 1")
        _require(self.batch_size >= 0, f"{p}.batch_size must be >= 0 (0: scaled with the data)")
        _require(self.learning_rate > 0, f"{p}.learning_rate must be > 0")
        _require(self.negatives >= 1, f"{p}.negatives must be >= 1")
        _require(self.l2 >= 0, f"{p}.l2 must be >= 0")
        _require(self.patience >= 0, f"{p}.patience must be >= 0 (0: by the epoch's size)")


@dataclass(frozen=True)
class MFConfig(NeuralConfig):
    """Funk SVD trained as a neural net: embeddings + biases, dot product, BCE on sampled negatives."""

    prefix: ClassVar[str] = "mf"


@dataclass(frozen=True)
class NeuMFConfig(NeuralConfig):
    """NCF after He et al. 2017: GMF and an MLP tower fused; optionally pretrained from both."""

    prefix: ClassVar[str] = "neumf"
    dim: int = 16
    # MLP tower: mlp_layers layers, the first 2*dim wide, halving each time.
    mlp_layers: int = 3
    pretrain: bool = True
    # User lists run the network on every (user, video) pair while users x videos stays within this;
    # beyond it (2e9 pairs took ~110 s on 2 cores, 1e11 would take hours) the network re-ranks the
    # top `rerank_candidates` videos of its GMF part (a dot product: the fast exact search).
    full_scoring_max_pairs: int = 500_000_000
    rerank_candidates: int = 200

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(1 <= self.mlp_layers <= 6, "neumf.mlp_layers must be between 1 and 6")
        _require(self.full_scoring_max_pairs >= 0, "neumf.full_scoring_max_pairs must be >= 0")
        _require(self.rerank_candidates >= 1, "neumf.rerank_candidates must be >= 1")
        _require(self.dim * 2 >> (self.mlp_layers - 1) >= 1, "neumf.dim too small for that many mlp_layers")


@dataclass(frozen=True)
class TwoTowerConfig(NeuralConfig):
    """Content-boosted two-tower: user = domains (+ id), video = id + content tokens; dot product."""

    prefix: ClassVar[str] = "two_tower"
    dim: int = 64
    epochs: int = 100
    learning_rate: float = 0.003
    l2: float = 1.0  # on all weights, per user in the data
    # Share of videos whose id embedding is hidden at each step, so the content tower learns to stand
    # alone (it alone places videos nobody has watched yet).
    id_dropout: float = 0.2
    # Share of each history dropped at each step (denoising, as Mult-DAE), and share of users whose
    # whole history is hidden, so the domain tower alone serves users known only by their domains.
    history_dropout: float = 0.5
    domains_only_share: float = 0.1
    # Catalogues up to this size get a full softmax over every video at each step; larger ones a
    # sampled softmax over the batch's own videos plus `sampled_videos` drawn uniformly (per step cost
    # then grows with the batch, not the catalogue: 100k videos would cost 100k logits per user).
    full_softmax_max_videos: int = 10_000
    sampled_videos: int = 4096
    # The user tower's output: "tanh" (as Mult-DAE's encoder; ML-100K A-temporal NDCG@10 0.184 -> 0.192
    # with the benchmark's tuning) or "none" (the bags' plain sum).
    user_activation: str = "tanh"
    # Recent views speak louder in the user tower: a view weighs 0.5 ** (its rank from the user's latest
    # view / this), 0: every view the same. 10 was chosen on ML-100K's validation split (of 0, 5, 10,
    # 20, 40); A-temporal NDCG@10 0.192 -> 0.197, A-full 0.050 -> 0.061.
    history_half_life: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("id_dropout", "history_dropout", "domains_only_share"):
            _require(0 <= getattr(self, name) < 1, f"two_tower.{name} must be in [0, 1)")
        _require(self.full_softmax_max_videos >= 0, "two_tower.full_softmax_max_videos must be >= 0")
        _require(self.user_activation in ("tanh", "none"), "two_tower.user_activation must be 'tanh' or 'none'")
        _require(self.history_half_life >= 0, "two_tower.history_half_life must be >= 0 (0: no recency weighting)")
        _require(self.sampled_videos >= 1, "two_tower.sampled_videos must be >= 1")


MODEL_NAMES = ("mf", "neumf", "two_tower")
_NESTED = {"mf": MFConfig, "neumf": NeuMFConfig, "two_tower": TwoTowerConfig}


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
    # How long the publish swap waits for a lock before backing off and retrying (0: wait forever,
    # which lets one long reader stall every reader queued behind the swap).
    swap_lock_timeout_ms: int = 100
    # CPU threads for PyTorch; 0 = chosen by the work's size (rec_models.training.auto_threads): one
    # thread for small steps (measured faster here), every core for large batches.
    torch_threads: int = 0
    # The serving model after the evaluated one: "continue" trains the evaluated weights one more
    # epoch over every view (the newest days included); "refit" trains from scratch on every view for
    # the epoch count early stopping chose (as many epochs again: 10 min for MF on 20M views).
    serve_fit: str = "continue"
    # User scoring is split into this many shards (Airflow maps one task per shard).
    user_shards: int = 1
    run_root: str = field(default_factory=lambda: os.environ.get("RECS_RUN_ROOT", str(PROJECT_ROOT / "var" / "runs")))
    # Which model's run serves the _current views: "auto" = best holdout NDCG@10 among the dot-product
    # models that passed the quality gate tonight; the two-tower always serves domain-only users.
    serving_model: str = "auto"
    mf: MFConfig = field(default_factory=MFConfig)
    neumf: NeuMFConfig = field(default_factory=NeuMFConfig)
    two_tower: TwoTowerConfig = field(default_factory=TwoTowerConfig)

    def __post_init__(self) -> None:
        _require(1 <= self.top_n <= 1000, "top_n must be between 1 and 1000")
        _require(self.holdout_days >= 1, "holdout_days must be >= 1")
        _require(self.history_days > 2 * self.holdout_days, "history_days must exceed twice holdout_days")
        _require(0 <= self.quality_tolerance <= 1, "quality_tolerance must be in [0, 1]")
        _require(0 <= self.max_rejected_share <= 1, "max_rejected_share must be in [0, 1]")
        _require(self.keep_published_runs >= 1, "keep_published_runs must be >= 1")
        _require(0 <= self.swap_lock_timeout_ms <= 60_000, "swap_lock_timeout_ms must be between 0 and 60000")
        _require(self.torch_threads >= 0, "torch_threads must be >= 0 (0: chosen by the work's size)")
        _require(1 <= self.user_shards <= 1024, "user_shards must be between 1 and 1024")
        _require(self.serve_fit in ("continue", "refit"), "serve_fit must be continue or refit")
        _require(self.serving_model in ("auto", *MODEL_NAMES),
                 f"serving_model must be one of auto, {', '.join(MODEL_NAMES)}")

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> "PipelineConfig":
        """Build from a flat dict (DAG params); nested model settings use a prefix, e.g. ``mf_dim``."""
        params = dict(params or {})
        nested = {}
        for name, nested_cls in _NESTED.items():
            taken = {f.name: params.pop(f"{name}_{f.name}") for f in fields(nested_cls) if f"{name}_{f.name}" in params}
            nested[name] = nested_cls(**{k: _coerce(nested_cls, k, v) for k, v in taken.items()})
        known = {f.name for f in fields(cls)} - set(_NESTED)
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"unknown pipeline params: {', '.join(unknown)}")
        kwargs = {k: _coerce(cls, k, v) for k, v in params.items()}
        return cls(**nested, **kwargs)

    def to_params(self) -> dict[str, Any]:
        """The flat form, as stored with each model run."""
        flat = {k: v for k, v in dataclasses.asdict(self).items() if k not in (*_NESTED, "run_root")}
        for name in _NESTED:
            flat.update({f"{name}_{k}": v for k, v in dataclasses.asdict(getattr(self, name)).items()})
        return flat

    def model_config(self, model_name: str) -> NeuralConfig:
        return getattr(self, model_name)


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
