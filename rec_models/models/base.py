"""The one small API every model implements; scoring by dot product happens outside the model."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
from scipy import sparse

from rec_models.data.dataset import Dataset, Split
from rec_models.topn import top_n


@dataclass
class FitReport:
    epochs: int = 0
    best_epoch: int = 0
    seconds: float = 0.0
    samples_per_second: float = 0.0
    history: list[dict] = field(default_factory=list)


class Recommender(ABC):
    """fit on interactions; expose user and item vectors whose dot product is the score."""

    name: ClassVar[str]

    @abstractmethod
    def fit(self, data: Dataset, before: float | None = None, validation: Split | None = None) -> FitReport:
        """Learn from the views before ``before`` (all when None); ``validation`` drives early stopping."""

    @abstractmethod
    def user_vectors(self, data: Dataset, users: np.ndarray) -> np.ndarray:
        """Query vectors for the given user rows."""

    @abstractmethod
    def item_vectors(self) -> np.ndarray:
        """One vector per video row; score(user, video) = user_vector . item_vector."""

    def similarity_vectors(self) -> np.ndarray:
        """Vectors for video-to-video similarity: L2-normalised item vectors (cosine)."""
        vectors = self.item_vectors()
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def recommend(
        self, data: Dataset, users: np.ndarray, k: int, *, seen: sparse.csr_matrix | None = None,
        allowed_items: np.ndarray | None = None,
    ):
        """Top-k videos for user rows, excluding ``seen`` (rows indexed like the dataset's users)."""
        queries = self.user_vectors(data, users)
        exclude = seen[users] if seen is not None else None
        yield from top_n(queries, self.item_vectors(), k, exclude=exclude, allowed_items=allowed_items)

    def similar_items(self, items: np.ndarray, k: int, *, allowed_items: np.ndarray | None = None):
        """Top-k most similar videos for the given video rows, never the video itself."""
        vectors = self.similarity_vectors()
        yield from top_n(vectors, vectors, k, query_rows=items, exclude_items=items, allowed_items=allowed_items)

    # Persistence: arrays in one .npz plus a JSON header; subclasses list what they store.
    def state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def config_dict(self) -> dict:
        return {}

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "state.npz", **self.state())
        (folder / "model.json").write_text(json.dumps({"name": self.name, "config": self.config_dict()}))

    @classmethod
    def load(cls, folder: Path) -> "Recommender":
        from rec_models.models import MODELS

        header = json.loads((folder / "model.json").read_text())
        model = MODELS[header["name"]].from_config(header["config"])
        with np.load(folder / "state.npz") as arrays:
            model.load_state(dict(arrays))
        return model

    @classmethod
    def from_config(cls, config: dict) -> "Recommender":
        return cls()


