"""A model's checkpoint: the evaluated model (what a later night continues from), the serving model
(what a later night's candidate is gated against), the id maps of the Dataset both were trained on,
and a small header (how it was trained). Each part is written whole or not at all (renamed into place)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np

from rec_models.data.id_maps import ERASED_USER, IdMaps
from rec_models.models import Recommender, load_model
from rec_models.models.base import CheckpointError

HEADER = "checkpoint.json"


def save_checkpoint(folder: Path, model: Recommender, ids: IdMaps, header: dict) -> None:
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp / "model")
    ids.save(tmp / "ids.npz")
    (tmp / HEADER).write_text(json.dumps(header, indent=2, default=str))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def add_serving_model(folder: Path, model: Recommender) -> None:
    tmp = folder / "serve.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp)
    shutil.rmtree(folder / "serve", ignore_errors=True)
    tmp.rename(folder / "serve")


def load_checkpoint(folder: Path, model_name: str, part: str = "model") -> tuple[Recommender, IdMaps, dict]:
    """(model, id maps, header) of ``part`` ("model": evaluated, "serve": serving), or
    :class:`CheckpointError` saying what is wrong with it."""
    if not (folder / HEADER).exists():
        raise CheckpointError(f"no checkpoint at {folder}")
    if part not in ("model", "serve"):
        raise ValueError(f"checkpoint part must be model or serve, got {part!r}")
    try:
        header = json.loads((folder / HEADER).read_text())
        model = load_model(folder / part)
        ids = IdMaps.load(folder / "ids.npz")
    except CheckpointError:
        raise
    except Exception as exc:  # a truncated npz, bad JSON, a missing file: all mean "unusable"
        raise CheckpointError(f"checkpoint at {folder} is unreadable: {type(exc).__name__}: {exc}") from exc
    if model.name != model_name:
        raise CheckpointError(f"checkpoint at {folder} holds {model.name}, not {model_name}")
    return model, ids, header


def forget_in_checkpoint(folder: Path, user_ids: np.ndarray) -> list[int]:
    """Erase these people from the checkpoint in ``folder``, in place: their rows of both parts are
    cleared (``Recommender.forget_users``), then their ids in the id maps become ``ERASED_USER``, so a
    warm start carries nothing of them. Returns the people it held; a rerun after a crash finishes."""
    ids = IdMaps.load(folder / "ids.npz")
    rows = np.flatnonzero(np.isin(ids.user, user_ids))
    if len(rows) == 0:
        return []
    for part in ("model", "serve"):
        if (folder / part).exists():
            model = load_model(folder / part)
            model.forget_users(rows)
            tmp = folder / f"{part}.erasing.tmp"  # a crash leaves a leftover the next erasure removes
            shutil.rmtree(tmp, ignore_errors=True)
            model.save(tmp)
            shutil.rmtree(folder / part)
            tmp.rename(folder / part)
    people = sorted(int(u) for u in ids.user[rows])
    user = ids.user.copy()
    user[rows] = ERASED_USER
    dataclasses.replace(ids, user=user).save(folder / "ids.erasing.npz")
    (folder / "ids.erasing.npz").replace(folder / "ids.npz")
    return people
