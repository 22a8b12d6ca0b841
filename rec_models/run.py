"""One nightly run: its identity (the data interval), settings, database and run folder.

Tasks hand each other files in the run folder and model run ids, never data. Every path and every
read or write of the run folder goes through :class:`RunFolder`, so where the folder lives is one
decision.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from rec_models.config import PipelineConfig
from rec_models.data.dataset import Dataset
from rec_models.data.snapshot import Snapshot
from rec_models.models import Recommender, load_model


@dataclass(frozen=True)
class Run:
    """Who the run is (data interval end = idempotency key, DAG run id), what it may do (config) and
    where it reads and writes (database, run folder)."""

    database_url: str = field(repr=False)  # may hold a password: never logged
    interval_end: datetime
    interval_start: datetime | None = None
    dag_run_id: str | None = None
    config: PipelineConfig = field(default_factory=PipelineConfig)

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

    @property
    def files(self) -> "RunFolder":
        return run_folder(self.config.run_root, self.interval_end)

    @property
    def interval_start_or_default(self) -> datetime:
        """The data interval's start; a day before its end when the run was not given one (the CLI)."""
        return self.interval_start or self.interval_end - timedelta(days=1)


_SLUG_FORMAT = "%Y-%m-%dT%H%M%SZ"
_SLUG = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{6}Z$")


def run_folder(root: str | Path, interval_end: datetime) -> "RunFolder":
    """The run folder of the night whose data interval ends at ``interval_end``."""
    return RunFolder(Path(root) / interval_end.astimezone(timezone.utc).strftime(_SLUG_FORMAT))


def prune_run_folders(root: str | Path, keep_nights: int, keep_checkpoints: set[tuple[str, datetime]],
                      current: datetime) -> list[str]:
    """Run folders beyond the newest ``keep_nights`` (and not ``current``'s) lose everything but the
    checkpoints in ``keep_checkpoints`` ((model, interval end) of runs still published); a folder left
    empty goes. Returns the removed paths, relative to ``root``."""
    root = Path(root)
    if not root.exists():
        return []
    folders = sorted(p for p in root.iterdir() if p.is_dir() and _SLUG.match(p.name))
    current_name = run_folder(root, current).path.name
    kept = {(model, run_folder(root, end).path.name) for model, end in keep_checkpoints}
    removed = []
    for folder in folders[:-keep_nights]:
        if folder.name == current_name:
            continue
        for child in sorted(folder.iterdir()):
            if child.name == "checkpoints" and child.is_dir():
                for checkpoint in sorted(child.iterdir()):
                    if (checkpoint.name, folder.name) not in kept:
                        _remove(checkpoint)
                        removed.append(str(checkpoint.relative_to(root)))
                if not any(child.iterdir()):
                    child.rmdir()
            else:
                _remove(child)
                removed.append(str(child.relative_to(root)))
        if not any(folder.iterdir()):
            folder.rmdir()
    return removed


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class RunFolder:
    """The run's files: snapshot, Dataset, models (``eval``: fitted before the holdout; ``serve``: on
    every view), scored chunks, and the small JSON records tasks hand each other."""

    def __init__(self, path: Path):
        self.path = path

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # Data
    @property
    def snapshot_dir(self) -> Path:
        return self.path / "snapshot"

    def has_snapshot(self) -> bool:
        return self.snapshot_dir.exists()

    def save_snapshot(self, snapshot: Snapshot) -> None:
        snapshot.save(self.snapshot_dir)

    def save_dataset(self, data: Dataset) -> None:
        data.save(self.path / "dataset")

    def load_dataset(self) -> Dataset:
        """The run's Dataset, built once by the extract (rebuilt from the snapshot if missing)."""
        folder = self.path / "dataset"
        if not (folder / "arrays.npz").exists():
            Dataset.from_snapshot(Snapshot.load(self.snapshot_dir)).save(folder)
        return Dataset.load(folder)

    # Models
    def model_dir(self, model_name: str, purpose: str) -> Path:
        if purpose not in ("eval", "serve"):
            raise ValueError(f"model purpose must be eval or serve, got {purpose!r}")
        return self.path / "models" / model_name / purpose

    def save_model(self, model: Recommender, purpose: str) -> None:
        model.save(self.model_dir(model.name, purpose))

    def load_model(self, model_name: str, purpose: str) -> Recommender:
        return load_model(self.model_dir(model_name, purpose))

    def checkpoint_dir(self, model_name: str) -> Path:
        """What a later night continues from: the evaluated model, its id maps and how it was trained.
        Kept as long as the run is published (the rest of the folder is pruned sooner)."""
        return self.path / "checkpoints" / model_name

    # Scored outputs
    def scores_dir(self, model_name: str) -> Path:
        """A model's scored chunks: ``items/`` (similar and popular videos) and one folder per user shard."""
        return self.path / "outputs" / model_name

    def clear_scores(self, model_name: str) -> None:
        shutil.rmtree(self.scores_dir(model_name), ignore_errors=True)

    # Records tasks hand each other
    def write_validation(self, summary: dict) -> None:
        self._write_json("validation.json", summary)

    def read_validation(self) -> dict:
        return self._read_json("validation.json")

    def write_baseline(self, model_name: str, metrics: dict) -> None:
        """Holdout metrics of a fallback model: the baseline every model's metrics are shown next to."""
        self._write_json(f"models/{model_name}/eval/holdout.json", metrics)

    def read_baseline(self, model_name: str) -> dict:
        return self._read_json(f"models/{model_name}/eval/holdout.json")

    def write_fit(self, model_name: str, report: dict) -> None:
        self._write_json(f"models/{model_name}/serve/fit.json", report)

    def read_fit(self, model_name: str) -> dict:
        return self._read_json(f"models/{model_name}/serve/fit.json")

    def write_evaluation(self, model_name: str, evaluation: dict) -> None:
        self._write_json(f"models/{model_name}/serve/evaluation.json", evaluation)

    def read_evaluation(self, model_name: str) -> dict | None:
        """The evaluate step's decision, or None when the model was not evaluated in this run."""
        path = self.path / f"models/{model_name}/serve/evaluation.json"
        return json.loads(path.read_text()) if path.exists() else None

    def write_summary(self, summary: dict) -> None:
        self._write_json("summary.json", summary)

    def _write_json(self, relative: str, value: Any) -> None:
        path = self.path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value, indent=2, default=str))

    def _read_json(self, relative: str) -> Any:
        path = self.path / relative
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: the task that writes it has not run for this interval")
        return json.loads(path.read_text())
