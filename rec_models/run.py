"""One nightly run: its identity (the data interval), settings, database and run folder.

Tasks hand each other files in the run folder and model run ids, never data. Every read or write of
the run folder goes through :class:`RunFolder`, over the run root's store (a local path or an object
store URL: :mod:`rec_models.storage`), so where the folder lives is one decision.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from rec_models.config import DAG_RUN_TIMEOUT_MINUTES, PipelineConfig
from rec_models.data.dataset import Dataset
from rec_models.data.id_maps import IdMaps
from rec_models.data.snapshot import Snapshot
from rec_models.models import Recommender, load_model
from rec_models.models.base import CheckpointError
from rec_models.models.checkpoint import add_serving_model, forget_in_checkpoint, load_checkpoint, save_checkpoint
from rec_models.storage import LocalStore, RunStore, open_store


@dataclass(frozen=True)
class Run:
    """Who the run is (data interval end = idempotency key, DAG run id), what it may do (config) and
    where it reads and writes (database, run folder)."""

    database_url: str = field(repr=False)  # may hold a password: never logged
    interval_end: datetime
    interval_start: datetime | None = None
    dag_run_id: str | None = None
    config: PipelineConfig = field(default_factory=PipelineConfig)
    # How to reach an object-store run root (key, secret, endpoint_url): from an Airflow Connection.
    storage_options: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.interval_end.tzinfo is None:
            raise ValueError("interval_end must be timezone-aware")

    @property
    def run_key(self) -> str:
        return self.interval_end.astimezone(timezone.utc).isoformat()

    @property
    def window_start(self) -> datetime:
        """Views and visits from here to the interval end are read."""
        return self.interval_end - timedelta(days=self.config.history_days)

    @cached_property
    def store(self) -> RunStore:
        """The run root's store, opened once per Run: an object store's client takes ~0.2 s to make, a
        call on it a few ms (a night's tasks make hundreds)."""
        return open_store(self.config.run_root, self.storage_options)

    @property
    def files(self) -> "RunFolder":
        return run_folder(self.store, self.interval_end)

    def folder_of(self, interval_end: datetime) -> "RunFolder":
        """The run folder of another night (a parent run's checkpoint) in this run's store."""
        return run_folder(self.store, interval_end)

    @property
    def interval_start_or_default(self) -> datetime:
        """The data interval's start; a day before its end when the run was not given one (the CLI)."""
        return self.interval_start or self.interval_end - timedelta(days=1)


_SLUG_FORMAT = "%Y-%m-%dT%H%M%SZ"
_SLUG = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{6}Z$")
CHECKPOINTS = "checkpoints"


def run_folder(store: RunStore | str | Path, interval_end: datetime) -> "RunFolder":
    """The run folder of the night whose data interval ends at ``interval_end`` (``store``: a store,
    or a local run root)."""
    if isinstance(store, (str, Path)):
        store = open_store(store)
    return RunFolder(store, interval_end.astimezone(timezone.utc).strftime(_SLUG_FORMAT))


def run_folders(store: RunStore) -> list["RunFolder"]:
    """Every night's run folder in the store, oldest first."""
    return [RunFolder(store, name) for name in store.children("") if _SLUG.match(name)]


def sweep_cache(store: RunStore) -> int:
    """Drop from this machine's cache what the store no longer holds (pruned, or rewritten by an
    erasure), leaving alone the folders of runs going on now; returns the artifacts dropped."""
    return store.sweep_cache(busy=lambda slug: bool(_SLUG.match(slug)) and RunFolder(store, slug).in_use())


def prune_run_folders(store: RunStore | str | Path, keep_nights: int, keep_checkpoints: set[tuple[str, datetime]],
                      current: datetime) -> list[str]:
    """Run folders beyond the newest ``keep_nights`` (and not ``current``'s, nor one a run is using) lose everything but the
    checkpoints in ``keep_checkpoints`` ((model, interval end) of runs still published); a folder left
    empty goes. Returns the removed paths, relative to the run root."""
    if isinstance(store, (str, Path)):
        store = open_store(store)
    folders = [name for name in store.children("") if _SLUG.match(name)]
    current_name = run_folder(store, current).slug
    kept = {(model, run_folder(store, end).slug) for model, end in keep_checkpoints}
    removed = []
    for folder in folders[:-keep_nights]:
        if folder == current_name or RunFolder(store, folder).in_use():
            continue  # a backfill of an older night may be running now
        for child in store.children(folder):
            if child == CHECKPOINTS:
                for checkpoint in store.children(f"{folder}/{child}"):
                    if (checkpoint, folder) not in kept:
                        store.remove(f"{folder}/{child}/{checkpoint}")
                        removed.append(f"{folder}/{child}/{checkpoint}")
                if not store.children(f"{folder}/{child}"):
                    store.remove(f"{folder}/{child}")
            else:
                store.remove(f"{folder}/{child}")
                removed.append(f"{folder}/{child}")
        if not store.children(folder):
            store.remove(folder)
    return removed


def disk_needed(store: RunStore | str | Path, current: datetime) -> tuple[int, int] | None:
    """(bytes of the newest run folder before ``current``'s, bytes free at the run root) for a local run
    root; None for an object store (no disk of ours to fill) or when no earlier night left a folder."""
    if isinstance(store, (str, Path)):
        store = open_store(store)
    if not isinstance(store, LocalStore):
        return None
    current_name = run_folder(store, current).slug
    earlier = sorted(name for name in store.children("") if _SLUG.match(name) and name < current_name)
    if not earlier:
        return None
    return store.bytes_under(earlier[-1]), shutil.disk_usage(store.root).free


def leftover_files(store: RunStore | str | Path) -> list[str]:
    """Files of failed or unfinished attempts under the run root (relative paths): what no committed
    artifact accounts for, except the records a run folder keeps (``<night>/*.json``, ``<night>/records/``)."""
    if isinstance(store, (str, Path)):
        store = open_store(store)
    leftovers = []
    for path in store.unaccounted():
        parts = path.split("/")
        record = _SLUG.match(parts[0]) and (len(parts) == 2 or parts[1] == "records") \
            and not path.endswith((".tmp", ".part"))
        if not record:
            leftovers.append(path)
    return leftovers


class RunFolder:
    """The run's files: snapshot, Dataset, models (``eval``: fitted before the holdout; ``serve``: on
    every view), checkpoints, scored chunks, and the small JSON records tasks hand each other."""

    def __init__(self, store: RunStore, slug: str):
        self.store, self.slug = store, slug

    def __repr__(self) -> str:
        return f"RunFolder({self.location!r})"

    @property
    def location(self) -> str:
        return self.store.location(self.slug)

    @property
    def path(self) -> Path:
        """Where the folder lies on this machine: the store's own folder, or for an object store its local
        cache, with everything committed under it downloaded."""
        return self.store.fetch(self.slug)

    def _at(self, relative: str) -> str:
        return f"{self.slug}/{relative}"

    def stored_bytes(self) -> dict[str, int]:
        """Bytes the folder holds on its store, per top-level part (snapshot, dataset, models, ...)."""
        return {part: self.store.bytes_under(self._at(part)) for part in self.store.children(self.slug)}

    # Data
    @property
    def snapshot_location(self) -> str:
        return self.store.location(self._at("snapshot"))

    def has_snapshot(self) -> bool:
        return self.store.exists(self._at("snapshot"))

    def save_snapshot(self, snapshot: Snapshot) -> None:
        with self.store.staged(self._at("snapshot")) as folder:
            snapshot.save(folder)

    def load_snapshot(self) -> Snapshot:
        return Snapshot.load(self.store.fetch(self._at("snapshot")))

    def save_dataset(self, data: Dataset) -> None:
        with self.store.staged(self._at("dataset")) as folder:
            data.save(folder)

    def load_dataset(self) -> Dataset:
        """The run's Dataset, built once by the extract (rebuilt from the snapshot if missing)."""
        if not self.store.exists(self._at("dataset")):
            self.save_dataset(Dataset.from_snapshot(self.load_snapshot()))
        return Dataset.load(self.store.fetch(self._at("dataset")))

    # Models
    @staticmethod
    def _model_part(model_name: str, purpose: str) -> str:
        if purpose not in ("eval", "serve"):
            raise ValueError(f"model purpose must be eval or serve, got {purpose!r}")
        return f"models/{model_name}/{purpose}"

    def save_model(self, model: Recommender, purpose: str) -> None:
        """A model without a checkpoint (the fallbacks); a checkpointed model's two parts are its models."""
        with self.store.staged(self._at(self._model_part(model.name, purpose))) as folder:
            model.save(folder)

    def load_model(self, model_name: str, purpose: str) -> Recommender:
        """The evaluated (``eval``) or serving (``serve``) model: from the model's checkpoint when it has
        one (each model is stored once), else from ``models/``."""
        self._model_part(model_name, purpose)  # names a bad purpose
        if self.store.exists(self._checkpoint(model_name)):
            return self.load_checkpoint(model_name, "model" if purpose == "eval" else "serve")[0]
        return load_model(self.store.fetch(self._at(self._model_part(model_name, purpose))))

    # Checkpoints: what a later night continues from (the evaluated model, its id maps, how it was
    # trained) and is gated against (the serving model). Kept as long as the run is published (the
    # rest of the folder is pruned sooner).
    def _checkpoint(self, model_name: str) -> str:
        return self._at(f"{CHECKPOINTS}/{model_name}")

    def save_checkpoint(self, model: Recommender, ids: IdMaps, header: dict) -> None:
        with self.store.staged(self._checkpoint(model.name)) as folder:
            save_checkpoint(folder, model, ids, header)

    def add_serving_model(self, model: Recommender) -> None:
        with self.store.staged(self._checkpoint(model.name), keep=True) as folder:
            add_serving_model(folder, model)

    def checkpoint_names(self) -> list[str]:
        return self.store.children(self._at(CHECKPOINTS))

    def forget_in_checkpoint(self, model_name: str, user_ids: np.ndarray) -> list[int]:
        """Erase these people from a model's checkpoint (rewritten whole); returns the people it held."""
        try:
            ids = IdMaps.load(self.store.fetch(self._checkpoint(model_name)) / "ids.npz")
        except FileNotFoundError:
            return []  # not committed (an attempt that never finished): nothing a night reads
        if not np.isin(ids.user, user_ids).any():
            return []
        with self.store.staged(self._checkpoint(model_name), keep=True) as folder:
            return forget_in_checkpoint(folder, user_ids)

    def load_checkpoint(self, model_name: str, part: str = "model") -> tuple[Recommender, IdMaps, dict]:
        """(model, id maps, header), or CheckpointError saying what is wrong with it."""
        if not self.store.exists(self._checkpoint(model_name)):
            raise CheckpointError(f"no checkpoint at {self.store.location(self._checkpoint(model_name))}")
        return load_checkpoint(self.store.fetch(self._checkpoint(model_name)), model_name, part)

    # Scored outputs: ``items/`` (similar and popular videos) and one part per user shard, each
    # committed whole by the task that wrote it.
    def _scores(self, model_name: str) -> str:
        return self._at(f"outputs/{model_name}")

    def staged_scores(self, model_name: str, part: str):
        """A local folder for one scored part (``items_part`` / ``user_part`` names), committed whole."""
        return self.store.staged(f"{self._scores(model_name)}/{part}")

    def scores_dir(self, model_name: str) -> Path:
        """A local folder holding every committed part of a model's scores (for publishing)."""
        return self.store.fetch(self._scores(model_name))

    def clear_scores(self, model_name: str) -> None:
        self.store.remove(self._scores(model_name))

    # What the night derived from its snapshot for its own tasks (never read by a later night): an
    # erasure removes it from every finished night whose snapshot held the person; a rerun rebuilds it.
    DERIVED = ("dataset", "models", "outputs")

    def remove_derived(self) -> list[str]:
        """Remove the Dataset, the models and the scored parts; returns the paths removed."""
        present = set(self.store.children(self.slug))
        removed = [self._at(part) for part in self.DERIVED if part in present]
        for path in removed:
            self.store.remove(path)
        return removed

    # A run marks its folder in use from its first task to its last, so that another night's pruning
    # (a backfill of an older night runs beside the nightly) leaves it alone; a mark older than the
    # DAG run timeout is a dead run's.
    def mark_in_use(self) -> None:
        self._write_json("in_use.json", {"since": time.time()})

    def unmark_in_use(self) -> None:
        self.store.remove(self._at("in_use.json"))

    def in_use(self) -> bool:
        try:
            since = json.loads(self.store.read_text(self._at("in_use.json")))["since"]
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return False
        return time.time() - float(since) < DAG_RUN_TIMEOUT_MINUTES * 60

    # Records tasks hand each other (small JSON objects, each written whole)
    def write_validation(self, summary: dict) -> None:
        self._write_json("validation.json", summary)

    def read_validation(self) -> dict:
        return self._read_json("validation.json")

    def write_withheld(self, people: int) -> None:
        """How many people with an erasure request upstream's tables still held in the window (not read)."""
        self._write_json("withheld.json", {"people": people})

    def read_withheld(self) -> int:
        relative = self._at("withheld.json")
        return json.loads(self.store.read_text(relative))["people"] if self.store.exists(relative) else 0

    def write_baseline(self, model_name: str, metrics: dict) -> None:
        """Holdout metrics of a fallback model: the baseline every model's metrics are shown next to."""
        self._write_json(f"records/{model_name}/holdout.json", metrics)

    def read_baseline(self, model_name: str) -> dict:
        return self._read_json(f"records/{model_name}/holdout.json")

    def write_warm_choice(self, model_name: str, choice: dict) -> None:
        """Who serves the domain-only users of this model's lists (the score step's decision, which every
        user shard reads)."""
        self._write_json(f"records/{model_name}/warm.json", choice)

    def read_warm_choice(self, model_name: str) -> dict:
        return self._read_json(f"records/{model_name}/warm.json")

    def write_fit(self, model_name: str, report: dict) -> None:
        self._write_json(f"records/{model_name}/fit.json", report)

    def read_fit(self, model_name: str) -> dict:
        return self._read_json(f"records/{model_name}/fit.json")

    def write_evaluation(self, model_name: str, evaluation: dict) -> None:
        self._write_json(f"records/{model_name}/evaluation.json", evaluation)

    def read_evaluation(self, model_name: str) -> dict | None:
        """The evaluate step's decision, or None when the model was not evaluated in this run."""
        relative = self._at(f"records/{model_name}/evaluation.json")
        return json.loads(self.store.read_text(relative)) if self.store.exists(relative) else None

    def write_summary(self, summary: dict) -> None:
        self._write_json("summary.json", summary)

    def _write_json(self, relative: str, value: Any) -> None:
        self.store.write_text(self._at(relative), json.dumps(value, indent=2, default=str))

    def _read_json(self, relative: str) -> Any:
        try:
            return json.loads(self.store.read_text(self._at(relative)))
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.store.location(self._at(relative))} is missing: the task that writes "
                                    "it has not run for this interval") from None
