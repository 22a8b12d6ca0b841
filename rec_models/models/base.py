"""The one small API every model implements; scoring by dot product happens outside the model."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from scipy import sparse

from rec_models.data.dataset import Dataset, Split
from rec_models.data.id_maps import IdMaps
from rec_models.topn import DEFAULT_BLOCK_BYTES, TopNBlock, pick_device, top_n, top_n_scored
from rec_models.training import FitReport


# User vectors computed at once when recommending (bounds memory for millions of users).
USER_CHUNK = 65_536


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 length (zero rows stay zero): dot products become cosine similarities."""
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


class CheckpointError(ValueError):
    """A checkpoint that cannot be continued from: missing, corrupt, or trained with other settings."""


@dataclass(frozen=True)
class WarmStart:
    """What a warm start continues from: the parent run's model and the id maps of the Dataset it was
    trained on, and how much of tonight's data the continued training reads."""

    parent: "Recommender"
    parent_ids: IdMaps
    recent_days: float
    history_share: float
    epochs: int
    patience: int = 1


class Recommender(ABC):
    """fit on interactions; expose user and item vectors whose dot product is the score.

    What a model can do is declared, never probed: ``dot_product`` (else it overrides
    :meth:`score_rows`, and its item vectors serve only video-to-video similarity),
    ``content_aware`` (ranks videos nobody watched yet, from their content),
    ``serves_warm_users`` (scores users from their features alone: :meth:`features_only`,
    :meth:`warm_features`) and ``finds_similar_videos`` (:meth:`similar_items`).
    """

    name: ClassVar[str]
    dot_product: ClassVar[bool] = True
    content_aware: ClassVar[bool] = False
    serves_warm_users: ClassVar[bool] = False
    finds_similar_videos: ClassVar[bool] = True

    @abstractmethod
    def fit(self, data: Dataset, *, before: float | None = None, validation: Split | None = None,
            epochs: int | None = None) -> FitReport:
        """Learn from the views before ``before`` (all when None). ``validation`` drives early stopping
        for models trained in epochs; ``epochs`` caps them (None: the model's configured maximum)."""

    def fine_tune(self, data: Dataset, *, epochs: int = 1, train_on: sparse.csr_matrix | None = None) -> FitReport:
        """Continue from the fitted state for ``epochs`` epochs on the pairs of ``train_on`` (every view
        when None): the serving model, the evaluated weights plus the newest days. A closed-form model
        has no weights to continue from: it fits again on every view."""
        return self.fit(data)

    def warm_examples(self, data: Dataset, before: float | None, recent_days: float, history_share: float,
                      seed: int) -> sparse.csr_matrix:
        """What training that continues from trained weights reads: the recent views plus a share of the
        older ones (``Dataset.recent_mix``), sampled as this model's examples are (views, or users)."""
        return data.recent_mix(before, recent_days, history_share, seed)

    def fit_warm(self, data: Dataset, warm: WarmStart, *, before: float | None = None,
                 validation: Split | None = None) -> FitReport:
        """Continue from ``warm.parent``'s weights, carried over to this Dataset's rows by source id,
        training on the views before ``before`` that ``warm`` selects (early stopping on ``validation``).
        Raises :class:`CheckpointError` when the parent cannot be continued from. A closed-form model
        has no weights to continue from: it fits again."""
        return self.fit(data, before=before, validation=validation)

    def refit(self, data: Dataset, chosen: FitReport) -> FitReport:
        """From scratch on every view, for the epochs early stopping chose in ``chosen``."""
        return self.fit(data, epochs=chosen.best_epoch or None)

    def carry(self, data: Dataset, parent: "Recommender", parent_ids: IdMaps,
              before: float | None = None) -> dict[str, dict[str, int]]:
        """Become ``parent`` (trained on ``parent_ids``' rows) on this Dataset's rows, without training:
        how an earlier run's model is scored on tonight's data."""
        raise CheckpointError(f"{self.name} has no weights to carry over: it is fitted again each night")

    def features_only(self) -> "Recommender":
        """This model scoring every user from their features alone (what a domain-only user gets)."""
        raise TypeError(f"{self.name} cannot score users from their features alone")

    def warm_features(self) -> np.ndarray:
        """User feature columns this model learned: a user with one of them is served as warm."""
        raise TypeError(f"{self.name} cannot score users from their features alone")

    @abstractmethod
    def user_vectors(self, data: Dataset, users: np.ndarray) -> np.ndarray:
        """Query vectors for the given user rows."""

    @abstractmethod
    def item_vectors(self) -> np.ndarray:
        """One vector per video row; score(user, video) = user_vector . item_vector."""

    def similarity_vectors(self) -> np.ndarray:
        """Vectors for video-to-video similarity: L2-normalised item vectors (cosine)."""
        return unit_rows(self.item_vectors())

    def score_rows(self, data: Dataset, device: torch.device | None = None) -> Callable[[np.ndarray], torch.Tensor]:
        """A scorer: user rows -> (len(rows), n_videos) scores on ``device``."""
        device = device or pick_device()
        items = torch.as_tensor(np.ascontiguousarray(self.item_vectors(), dtype=np.float32), device=device)

        def score(rows: np.ndarray) -> torch.Tensor:
            users = np.ascontiguousarray(self.user_vectors(data, rows), dtype=np.float32)
            return torch.as_tensor(users, device=device) @ items.T

        return score

    def recommend(
        self, data: Dataset, users: np.ndarray, k: int, *, seen: sparse.csr_matrix | None = None,
        allowed_items: np.ndarray | None = None, block_bytes: int = DEFAULT_BLOCK_BYTES,
    ) -> Iterator[TopNBlock]:
        """Top-k videos for user rows (block.queries are user rows), never one in ``seen``."""
        device = pick_device()
        users = np.asarray(users)
        if not self.dot_product:
            yield from top_n_scored(self.score_rows(data, device), users, data.n_videos, k, exclude=seen,
                                    allowed_items=allowed_items, block_bytes=block_bytes, device=device)
            return
        items = self.item_vectors()
        for start in range(0, len(users), USER_CHUNK):
            chunk = users[start:start + USER_CHUNK]
            for block in top_n(self.user_vectors(data, chunk), items, k, allowed_items=allowed_items,
                               exclude=seen[chunk] if seen is not None else None, block_bytes=block_bytes,
                               device=device):
                yield TopNBlock(start=start + block.start, queries=chunk[block.queries], items=block.items,
                                scores=block.scores)

    def similar_items(self, items: np.ndarray, k: int, *, allowed_items: np.ndarray | None = None):
        """Top-k most similar videos for the given video rows, never the video itself."""
        if not self.finds_similar_videos:
            raise TypeError(f"{self.name} has no notion of similar videos")
        vectors = self.similarity_vectors()
        yield from top_n(vectors, vectors, k, query_rows=items, exclude_items=items, allowed_items=allowed_items)

    def forget_users(self, rows: np.ndarray) -> int:
        """Erase what this model holds about these user rows (people who asked to be forgotten): their
        rows of every table and bag indexed by user are zeroed, so nothing learnt from them stays.
        Returns the values cleared. Popularity and the domain models keep nothing per user (their state
        is per video and per domain): nothing to clear."""
        return 0

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
    def from_config(cls, config: dict) -> "Recommender":
        return cls()


