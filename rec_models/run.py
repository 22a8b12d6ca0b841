"""One nightly run: its identity (the data interval), settings, database and run folder.

Tasks hand each other files in the run folder and model run ids, never data. Every path and every
read or write of the run folder goes through :class:`RunFolder`, so where the folder lives is one
decision.
"""

from __future__ import annotations

import json
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
        slug = self.interval_end.astimezone(timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")
        return RunFolder(Path(self.config.run_root) / slug)


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
