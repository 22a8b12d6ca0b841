"""The source ids behind a run's dense rows and columns (users, videos, domains, content tokens), so a
model trained on one night's Dataset can be carried over to the next night's, whose rows differ."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The id spaces a model's tables are indexed by.
SPACES = ("user", "video", "user_feature", "item_feature")
# The user id of a row whose person was erased: no source id is negative (the rules reject them), so
# it matches nobody and a warm start carries nothing of that row.
ERASED_USER = -1


@dataclass(frozen=True)
class IdMaps:
    user: np.ndarray  # source user id per user row
    video: np.ndarray  # source video id per video row
    user_feature: np.ndarray  # domain per user-feature column
    item_feature: np.ndarray  # content token per item-feature column

    @classmethod
    def of(cls, data) -> "IdMaps":
        """The id maps of a Dataset."""
        return cls(user=np.asarray(data.user_ids), video=np.asarray(data.video_ids),
                   user_feature=np.asarray(data.user_feature_names, dtype=str),
                   item_feature=np.asarray(data.item_feature_names, dtype=str))

    def save(self, path: Path) -> None:
        np.savez(path, **{space: getattr(self, space) for space in SPACES})

    @classmethod
    def load(cls, path: Path) -> "IdMaps":
        with np.load(path, allow_pickle=False) as arrays:
            missing = [space for space in SPACES if space not in arrays]
            if missing:
                raise ValueError(f"{path} lacks the id maps of {', '.join(missing)}")
            return cls(**{space: arrays[space] for space in SPACES})


def matching_rows(old_ids: np.ndarray, new_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(new rows, old rows) of the ids present in both maps; ids of either side may be in any order."""
    order = np.argsort(old_ids, kind="stable")
    sorted_old = old_ids[order]
    position = np.minimum(np.searchsorted(sorted_old, new_ids), max(len(sorted_old) - 1, 0))
    found = (np.flatnonzero(sorted_old[position] == new_ids) if len(sorted_old)
             else np.zeros(0, dtype=np.int64))
    return found, order[position[found]]
