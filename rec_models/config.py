"""Typed settings for one nightly run: the one definition of every setting.

Each field carries its description and bounds (``setting``); from them come the validation below,
the DAG's ``Param``s (:func:`param_specs`), the CLI's ``--param`` keys and the README's params table
(``python -m rec_models params``). Standard library only: DAG files import it at parse time.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Literal

from rec_models.names import MODEL_NAMES

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _minutes_from_env(name: str, default: float, *, zero_means_off: bool = False) -> float:
    """A deployment setting read where the DAG is parsed (the scheduler's and workers' environment)."""
    text = os.environ.get(name, "")
    try:
        value = float(text) if text else default
    except ValueError:
        raise ValueError(f"{name} must be a number of minutes, got {text!r}") from None
    if value < 0 or (value == 0 and not zero_means_off):
        raise ValueError(f"{name} must be > 0 minutes{' (0: off)' if zero_means_off else ''}, got {text!r}")
    return value


# Deployment settings of the DAG itself (not per run: Airflow reads them when it parses the DAG).
# The longest a nightly DAG run may take (its dagrun_timeout); a run folder marked in use for longer
# belongs to a run that died.
DAG_RUN_TIMEOUT_MINUTES = _minutes_from_env("RECS_DAG_RUN_TIMEOUT_MINUTES", 360)
# The night has published by this long after its run was queued (at its interval end, for the nightly
# run), or a deadline alert goes out; earlier than the timeout, so people hear before it fails. 0: no
# deadline, for `airflow dags test` (Airflow 3.3.2's in-process run fails on a DAG with a deadline).
PUBLISH_DEADLINE_MINUTES = _minutes_from_env("RECS_PUBLISH_DEADLINE_MINUTES", 300, zero_means_off=True)
# A failed task's first retry waits this long (doubling, up to 20 minutes).
RETRY_DELAY_MINUTES = _minutes_from_env("RECS_RETRY_DELAY_MINUTES", 1)

_MISSING = dataclasses.MISSING


def setting(default: Any = _MISSING, description: str = "", *, minimum: float | None = None,
            maximum: float | None = None, exclusive_minimum: float | None = None,
            exclusive_maximum: float | None = None, operator: bool = True,
            default_factory: Any = _MISSING) -> Any:
    """A config field with what operators are told about it and the bounds it must keep.
    ``operator=False``: a deployment setting (such as the run folder), not a per-run param."""
    metadata = {"description": description, "minimum": minimum, "maximum": maximum,
                "exclusive_minimum": exclusive_minimum, "exclusive_maximum": exclusive_maximum,
                "operator": operator}
    if default_factory is not _MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class NeuralConfig:
    """What every model trained by the shared loop needs: size, optimisation and early stopping."""

    prefix: ClassVar[str] = "model"
    label: ClassVar[str] = "Model"
    # Settings whose change makes a checkpoint's weights unusable for a warm start.
    shapes_weights: ClassVar[tuple[str, ...]] = ("dim",)
    dim: int = setting(32, "Embedding size.", minimum=1)
    epochs: int = setting(40, "Maximum epochs (early stopping on a validation split decides).", minimum=1)
    batch_size: int = setting(0, "Examples per step (MF, NCF: positives; two-tower: users); 0: scaled with "
                                 "the data (small data keeps small steps, 2M views take 16k a step).", minimum=0)
    learning_rate: float = setting(0.02, "Adam learning rate.", exclusive_minimum=0)
    negatives: int = setting(4, "Sampled negatives per positive (pointwise models).", minimum=1)
    l2: float = setting(1e-2, "L2 penalty on the looked-up embeddings.", minimum=0)
    patience: int = setting(0, "Epochs without a better validation NDCG@10 before stopping; 0: by the "
                               "epoch's size (small data waits up to 5 epochs, 100k users 2).", minimum=0)

    def __post_init__(self) -> None:
        _check_fields(self, f"{self.prefix}.")

    def weights_fingerprint(self) -> dict[str, Any]:
        """The settings a checkpoint must share with tonight's to be continued from."""
        return {name: getattr(self, name) for name in self.shapes_weights}


@dataclass(frozen=True)
class MFConfig(NeuralConfig):
    """Funk SVD trained as a neural net: embeddings + biases, dot product, BCE on sampled negatives."""

    prefix: ClassVar[str] = "mf"
    label: ClassVar[str] = "MF"


@dataclass(frozen=True)
class NeuMFConfig(NeuralConfig):
    """NCF after He et al. 2017: GMF and an MLP tower fused; optionally pretrained from both."""

    prefix: ClassVar[str] = "neumf"
    label: ClassVar[str] = "NeuMF"
    shapes_weights: ClassVar[tuple[str, ...]] = ("dim", "mlp_layers", "pretrain")
    dim: int = setting(16, "Embedding size of the GMF and MLP parts.", minimum=1)
    mlp_layers: int = setting(3, "MLP tower layers, the first 2*dim wide, halving each time.", minimum=1, maximum=6)
    pretrain: bool = setting(True, "Pretrain NeuMF from a GMF and an MLP trained alone (He et al.).")
    # 2e9 pairs took ~110 s on 2 cores; 1e11 (1M users x 100k videos) would take hours.
    full_scoring_max_pairs: int = setting(
        500_000_000, "User lists run the network on every (user, video) pair up to this many pairs; beyond, "
                     "it re-ranks the top rerank_candidates of its pretrained GMF.", minimum=0)
    rerank_candidates: int = setting(200, "GMF candidates per user the network re-ranks on large worlds.", minimum=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.dim * 2 >> (self.mlp_layers - 1) >= 1, "neumf.dim too small for that many mlp_layers")


@dataclass(frozen=True)
class TwoTowerConfig(NeuralConfig):
    """Content-boosted two-tower: user = domains + watched videos, video = id + content tokens; dot product."""

    prefix: ClassVar[str] = "two_tower"
    label: ClassVar[str] = "Two-tower"
    shapes_weights: ClassVar[tuple[str, ...]] = ("dim", "user_activation")
    dim: int = setting(64, "Embedding size of both towers.", minimum=1)
    epochs: int = setting(100, "Maximum epochs (early stopping on a validation split decides).", minimum=1)
    learning_rate: float = setting(0.003, "Adam learning rate.", exclusive_minimum=0)
    l2: float = setting(1.0, "L2 penalty on all weights, per user in the data.", minimum=0)
    id_dropout: float = setting(0.2, "Share of videos whose id embedding is hidden at each step, so the content "
                                     "tower learns to place unwatched videos alone.", minimum=0, exclusive_maximum=1)
    history_dropout: float = setting(0.5, "Share of each history dropped at each step (denoising, as Mult-DAE).",
                                     minimum=0, exclusive_maximum=1)
    domains_only_share: float = setting(0.1, "Share of users whose whole history is hidden at each step, so the "
                                             "domain tower alone serves domain-only users.",
                                        minimum=0, exclusive_maximum=1)
    # Per-step cost of a sampled softmax grows with the batch, not the catalogue (100k videos would
    # cost 100k logits per user).
    full_softmax_max_videos: int = setting(
        10_000, "Catalogues up to this size get a full softmax over every video; larger ones a sampled softmax.",
        minimum=0)
    sampled_videos: int = setting(4096, "Videos drawn uniformly per step for the sampled softmax.", minimum=1)
    # tanh: ML-100K A-temporal NDCG@10 0.184 -> 0.192 with the benchmark's tuning.
    user_activation: Literal["tanh", "none"] = setting(
        "tanh", "The user tower's output: tanh (as Mult-DAE's encoder) or none (the bags' plain sum).")
    # 10 was chosen on ML-100K's validation split (of 0, 5, 10, 20, 40).
    history_half_life: float = setting(
        10.0, "Recent views speak louder: a view weighs 0.5 ** (its rank from the user's latest view / this) in "
              "training's predict-the-future examples, and when a user is scored unless choose_history_half_life; "
              "0: every view the same.", minimum=0)
    # Where interests drift (the structured world) the best is 1-3 views; on MovieLens 10: the data decides.
    choose_history_half_life: bool = setting(
        True, "Each fit, the half-life users' views are scored with is chosen on the validation split (NDCG@10) "
              "among 1, 2, 3, 5, 10, 20 and history_half_life.")
    # 0.5 was chosen on ML-100K's validation split (of 0, 0.25, 0.5, 0.75, 1; 1 alone is far worse).
    # 14 and 0.5: on the structured world (bench-quality) they lifted hot users' Recall@10 and served those
    # whose interest changed last week; MovieLens' features have no dates, where they change nothing.
    domain_half_life_days: float = setting(
        14.0, "A day's visits weigh 0.5 ** (age in days / this) in a user's domain bag; 0: every day the same.",
        minimum=0)
    domain_recent_weight: float = setting(
        0.5, "Weight of the bag of the last days' visits (1-day half-life) added to a user's domain bag, so an "
             "interest that changed last week is heard; 0: none.", minimum=0)
    future_share: float = setting(
        0.5, "Share of users per training step who predict their later views from their earlier ones "
             "(the others reconstruct their whole history).", minimum=0, maximum=1)


MODEL_CONFIGS: dict[str, type[NeuralConfig]] = {cls.prefix: cls for cls in (MFConfig, NeuMFConfig, TwoTowerConfig)}
if tuple(MODEL_CONFIGS) != MODEL_NAMES:
    raise ImportError(f"model configs {tuple(MODEL_CONFIGS)} do not match the model names {MODEL_NAMES}")


# "auto" or a model name (typing.Literal takes the names as a tuple, so they are spelled once).
ServingModel = Literal[("auto", *MODEL_NAMES)]


@dataclass(frozen=True)
class PipelineConfig:
    """Everything one nightly run needs to know; every operator field is a DAG param and a CLI --param."""

    top_n: int = setting(20, "Videos per list (N).", minimum=1, maximum=1000)
    seed: int = setting(42, "Random seed: the same data and seed give the same rows.", minimum=0)
    holdout_days: int = setting(1, "Days of views before the interval end held out for evaluation.", minimum=1)
    history_days: int = setting(180, "Days of history read before the interval end (more than twice holdout_days).",
                                minimum=3)
    quality_tolerance: float = setting(0.02, "Accept a candidate unless its holdout NDCG@10 is worse than the "
                                             "model's accepted run by more than this.", minimum=0, maximum=1)
    max_rejected_share: float = setting(0.2, "Fail before training when a source has a larger share of bad rows.",
                                        minimum=0, maximum=1)
    include_seen: bool = setting(False, "Allow already-watched videos in user lists.")
    keep_published_runs: int = setting(7, "Published runs kept per model; older partitions are pruned.", minimum=1)
    # Without a timeout one long reader stalls the swap and every reader queued behind it.
    swap_lock_timeout_ms: int = setting(100, "Publish waits this long for a lock, then backs off and retries; "
                                             "0: no timeout (waits as long as it takes).", minimum=0, maximum=60_000)
    torch_threads: int = setting(0, "CPU threads for PyTorch; 0: one for small data, for large the cores divided "
                                    "among tasks_per_machine.", minimum=0)
    tasks_per_machine: int = setting(
        0, "Tasks that share one machine's cores; 0: those doing PyTorch work on it now, counted again as a task "
           "goes (the LocalExecutor trains the models side by side; the one left running takes every core).",
        minimum=0)
    # "refit" costs as many epochs again: 10 min for MF on 20M views.
    serve_fit: Literal["continue", "refit"] = setting(
        "continue", "Serving model: the evaluated weights trained one more epoch over every view (continue), "
                    "or a refit from scratch on every view (refit).")
    user_shards: int = setting(2, "User scoring shards: one mapped task each (more workers, more shards).",
                               minimum=1, maximum=1024)
    serving_model: ServingModel = setting(
        "auto", "Model whose run the _current views show (auto: best holdout NDCG@10 among dot-product models); "
                "domain-only users are served by the best domain model of the night (choose_warm).")
    publish_models: str = setting(
        "serving", "Models whose every user list is scored and published each night: serving (only the model "
                   "serving_model chooses), all (every model that passed its gate, to query side by side), or a "
                   "comma-separated list of model names published besides the serving one. The others are "
                   "evaluated and kept as candidates (a later night continues from and is gated against them).")
    # Night after night: continue from the last published run's weights, retrain from scratch now and then.
    train_mode: Literal["auto", "full", "warm"] = setting(
        "auto", "full: every model from scratch; warm: continue from its parent (the latest accepted run before "
                "this interval) on recent views plus a sample of older ones; auto: warm, with a full retrain every "
                "full_retrain_every nights, when no usable checkpoint exists, when the settings that shape the "
                "weights changed, or when the warm candidate fails its gate.")
    full_retrain_every: int = setting(7, "auto: retrain from scratch every this many nights, warm in between "
                                         "(1: every night from scratch).", minimum=1)
    warm_recent_days: int = setting(1, "Warm training reads every view since the parent run's data ended (at least "
                                       "the last this many days), plus a sample of older views (warm_history_share).",
                                    minimum=1)
    warm_history_share: float = setting(
        0.2, "Warm training: the share of views older than warm_recent_days mixed in, so old tastes are not "
             "forgotten (the two-tower, whose example is a user's whole history, counts the older views of the "
             "users with recent ones toward it).", minimum=0, maximum=1)
    warm_epochs: int = setting(10, "Warm training: maximum epochs (early stopping on validation decides).", minimum=1)
    warm_patience: int = setting(1, "Warm training: epochs without a better validation NDCG@10 before stopping "
                                    "(continued weights start near their best).", minimum=1)
    partial_day_share: float = setting(
        0.2, "Skip training (the previous run keeps serving) when the interval holds fewer views than this share "
             "of the median day of the 7 before it: a partial day; no views at all always skip.", minimum=0,
        maximum=1)
    keep_run_folders: int = setting(3, "Run folders of the newest nights kept whole; older ones keep only the "
                                       "checkpoints of runs still published and of each model's latest accepted "
                                       "run.", minimum=1)
    # Retention (README "Personal data"): how long each place keeps what it holds, enforced nightly.
    keep_rejected_days: int = setting(30, "Quarantined source rows are deleted this many days after the last night "
                                          "whose window held them.", minimum=1)
    keep_metrics_days: int = setting(400, "Next-day metrics (figures per segment, no person in them) are kept this "
                                          "many days.", minimum=1)
    keep_alerts_days: int = setting(90, "Delivered alerts are kept this many days.", minimum=1)
    # The domain model (users known only by their domains): reduced-rank ridge regression.
    domain_rank: int = setting(128, "Domain model: rank of the reduced-rank ridge regression from domains to videos.",
                               minimum=1)
    domain_l2: float = setting(1.0, "Domain model: ridge penalty λ.", exclusive_minimum=0)
    # 14, 0.25 and 0.5 below: bench-domains' validation choices on the structured and noisy worlds.
    domain_half_life_days: float = setting(
        14.0, "Domain model: a day's visits weigh 0.5 ** (age in days / this) in a user's bag; 0: every day the same.",
        minimum=0)
    domain_popularity_damping: float = setting(
        0.25, "Domain model: scores divided by (views + 1) ** this, so videos everybody watches do not crowd "
             "every list.", minimum=0, maximum=1)
    domain_recent_weight: float = setting(
        0.5, "Domain model: weight of the recent bag (domain_recent_half_life_days) added to a user's bag, so an "
             "interest that changed last week is heard; 0: the month's bag alone.", minimum=0)
    domain_recent_half_life_days: float = setting(1.0, "Domain model: half-life in days of the recent bag.",
                                                  exclusive_minimum=0)
    domain_max_domains: int = setting(20_000, "Domain model: the most visited domains it learns (a domains x "
                                              "domains matrix is solved: 20k take 3.2 GB).", minimum=1)
    # Alerts (rec.alerts, delivered by Airflow's notifiers): who is told, through which Connections.
    alert_emails: str = setting("", "Comma-separated addresses told when a night fails, times out, misses its "
                                    "deadline, skips training, finds the disk short or a model fails its gate; "
                                    "empty: no e-mail (the alerts are still recorded in rec.alerts).")
    alert_smtp_conn_id: str = setting("smtp_default", "Airflow Connection of the SMTP server alert e-mails go "
                                                      "through (host, port, login, from_email in its extra).")
    alert_apprise_conn_id: str = setting("", "Airflow Connection of Apprise targets (chat, webhooks) alerts also "
                                             "go to; empty: none.")
    disk_free_margin: float = setting(
        1.5, "Before training: fail the night early (the published runs keep serving) unless the run root has this "
             "many times the bytes of the newest earlier run folder free, and the database's disk this many times "
             "what tonight's publishes are expected to add.", minimum=1)
    run_root: str = setting(description="Folder or object-store URL (s3://bucket/prefix) for run files "
                                        "(RECS_RUN_ROOT).", operator=False,
                            default_factory=lambda: os.environ.get("RECS_RUN_ROOT",
                                                                   str(PROJECT_ROOT / "var" / "runs")))
    mf: MFConfig = field(default_factory=MFConfig)
    neumf: NeuMFConfig = field(default_factory=NeuMFConfig)
    two_tower: TwoTowerConfig = field(default_factory=TwoTowerConfig)

    def __post_init__(self) -> None:
        _check_fields(self, "")
        _require(self.history_days > 2 * self.holdout_days, "history_days must exceed twice holdout_days")
        self.published_besides_serving()  # names a bad value

    def published_besides_serving(self) -> tuple[str, ...]:
        """The models ``publish_models`` publishes besides the serving one (every model for "all")."""
        value = self.publish_models.strip()
        if value == "serving":
            return ()
        if value == "all":
            return MODEL_NAMES
        names = tuple(name.strip() for name in value.split(","))
        unknown = [name for name in names if name not in MODEL_NAMES]
        _require(not unknown and bool(names), f"publish_models must be serving, all or model names from "
                                              f"{', '.join(MODEL_NAMES)} separated by commas, got {value!r}")
        return names

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> "PipelineConfig":
        """Build from flat operator params (DAG params, CLI --param); model settings carry the model's
        prefix, e.g. ``mf_dim``. Values may arrive as strings; unknown keys are refused."""
        params = dict(params or {})
        unknown = sorted(set(params) - set(param_specs()))
        if unknown:
            raise ValueError(f"unknown pipeline params: {', '.join(unknown)}")
        nested = {}
        for name, nested_cls in MODEL_CONFIGS.items():
            taken = {f.name: params.pop(f"{name}_{f.name}") for f in fields(nested_cls) if f"{name}_{f.name}" in params}
            nested[name] = nested_cls(**{k: _coerce(nested_cls, k, v, f"{name}_{k}") for k, v in taken.items()})
        return cls(**nested, **{k: _coerce(cls, k, v, k) for k, v in params.items()})

    def to_params(self) -> dict[str, Any]:
        """The flat operator params, as stored with each model run (``from_params`` reads them back)."""
        flat = {f.name: getattr(self, f.name) for f in _operator_fields(type(self))}
        for name in MODEL_CONFIGS:
            nested = getattr(self, name)
            flat.update({f"{name}_{f.name}": getattr(nested, f.name) for f in _operator_fields(type(nested))})
        return flat


@dataclass(frozen=True)
class ParamSpec:
    """One operator param as the DAG, the CLI and the docs show it."""

    key: str
    default: Any
    type: str  # JSON schema type: integer, number, boolean, string
    description: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    enum: tuple[str, ...] | None = None

    def schema(self) -> dict[str, Any]:
        """JSON-schema keywords (as Airflow's ``Param`` takes them), bounds and enum only where set."""
        keywords = {"minimum": self.minimum, "maximum": self.maximum, "exclusiveMinimum": self.exclusive_minimum,
                    "exclusiveMaximum": self.exclusive_maximum, "enum": list(self.enum) if self.enum else None}
        return {"type": self.type, **{k: v for k, v in keywords.items() if v is not None}}

    def bounds_text(self) -> str:
        if self.enum:
            return " / ".join(self.enum)
        low = f">= {self.minimum:g}" if self.minimum is not None else \
            f"> {self.exclusive_minimum:g}" if self.exclusive_minimum is not None else ""
        high = f"<= {self.maximum:g}" if self.maximum is not None else \
            f"< {self.exclusive_maximum:g}" if self.exclusive_maximum is not None else ""
        return ", ".join(filter(None, (low, high)))


def param_specs() -> dict[str, ParamSpec]:
    """Every operator param, flat (model settings prefixed ``mf_``, ``neumf_``, ``two_tower_``)."""
    return dict(_param_specs())


@cache
def _param_specs() -> dict[str, ParamSpec]:
    specs = {f.name: _spec(PipelineConfig, f, f.name) for f in _operator_fields(PipelineConfig)}
    for name, nested_cls in MODEL_CONFIGS.items():
        specs.update({f"{name}_{f.name}": _spec(nested_cls, f, f"{name}_{f.name}")
                      for f in _operator_fields(nested_cls)})
    return specs


_JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string"}
_COMPARE = {">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, "<": lambda a, b: a < b}


def _operator_fields(owner: type) -> list[dataclasses.Field]:
    return [f for f in fields(owner) if f.metadata.get("operator", False)]


def _declared(owner: type, name: str) -> Any:
    return _type_hints(owner)[name]


@cache
def _type_hints(owner: type) -> dict[str, Any]:
    return typing.get_type_hints(owner)


def _spec(owner: type, f: dataclasses.Field, key: str) -> ParamSpec:
    declared = _declared(owner, f.name)
    meta = f.metadata
    default = f.default if f.default is not _MISSING else f.default_factory()
    enum = typing.get_args(declared) if typing.get_origin(declared) is Literal else None
    description = meta["description"] if owner is PipelineConfig else f"{owner.label}: {meta['description']}"
    return ParamSpec(key=key, default=default, type="string" if enum else _JSON_TYPES[declared],
                     description=description,
                     minimum=meta["minimum"], maximum=meta["maximum"], exclusive_minimum=meta["exclusive_minimum"],
                     exclusive_maximum=meta["exclusive_maximum"], enum=enum)


def _check_fields(instance: Any, label_prefix: str) -> None:
    """Every field within its declared bounds and choices, or a ValueError naming it."""
    for f in fields(instance):
        if "operator" not in f.metadata:
            continue
        value, label, meta = getattr(instance, f.name), label_prefix + f.name, f.metadata
        declared = _declared(type(instance), f.name)
        if typing.get_origin(declared) is Literal:
            choices = typing.get_args(declared)
            _require(value in choices, f"{label} must be " + (
                " or ".join(choices) if len(choices) == 2 else f"one of {', '.join(choices)}") + f", got {value!r}")
            continue
        low, high = meta["minimum"], meta["maximum"]
        if low is not None and high is not None:
            _require(low <= value <= high, f"{label} must be between {low:g} and {high:g}, got {value!r}")
            continue
        for bound, sign in ((low, ">="), (meta["exclusive_minimum"], ">"), (high, "<="), (meta["exclusive_maximum"], "<")):
            if bound is not None:
                _require(_COMPARE[sign](value, bound), f"{label} must be {sign} {bound:g}, got {value!r}")


def _coerce(owner: type, name: str, value: Any, key: str) -> Any:
    """Params from the UI or the CLI may arrive as strings; convert to the field's declared type or fail clearly."""
    declared = _declared(owner, name)
    if typing.get_origin(declared) is Literal:
        return str(value)
    if declared is bool:
        if isinstance(value, bool) or value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ValueError(f"param {key} must be a boolean, got {value!r}")
    try:
        converted = declared(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"param {key} must be {declared.__name__}, got {value!r}") from exc
    if declared is int and isinstance(value, float) and value != converted:
        raise ValueError(f"param {key} must be int, got {value!r}")
    return converted


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)
