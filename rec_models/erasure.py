"""Erasing people from the run folders of a store (local, or an object store and this machine's cache
of it): what a later night reads is rewritten without them, what only the night itself read is removed.

Per finished night whose snapshot held a requested person: the snapshot is rewritten without their
rows, and the Dataset, models and scored parts derived from it are removed (a rerun of that night
rebuilds them from the rewritten snapshot). Every checkpoint that held them (what warm starts and the
quality gate read) is rewritten with their rows cleared and their id gone. Temporary files of
unfinished writes go too. A folder another run is using now is left for the next attempt.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from rec_models.run import RunFolder, leftover_files, run_folders, sweep_cache
from rec_models.storage import RunStore

log = logging.getLogger(__name__)

# The places in run folders an erasure cleans, as rec.erasure_requests.removed names them.
SNAPSHOT_ROWS = "run folder snapshots (rows)"
DERIVED_FILES = "run folder datasets, models and scores (nights)"
CHECKPOINTS = "checkpoints"
FILE_PLACES = (SNAPSHOT_ROWS, DERIVED_FILES, CHECKPOINTS)


@dataclass
class FolderErasure:
    removed: dict[str, Counter] = field(default_factory=lambda: {place: Counter() for place in FILE_PLACES})
    busy: list[str] = field(default_factory=list)  # folders another run is using: cleaned next time
    leftovers: int = 0  # temporary files of unfinished writes removed
    cache_dropped: int = 0  # artifacts dropped from this machine's cache

    def by_place(self) -> dict[str, dict[int, int]]:
        return {place: dict(counts) for place, counts in self.removed.items()}


def erase_from_run_folders(store: RunStore, user_ids: np.ndarray, current: str | None = None) -> FolderErasure:
    """Erase these people from every run folder of ``store`` but those another run is using (``current``:
    the slug of the run doing the erasure, whose own folder is never skipped); then drop from this
    machine's cache what the store no longer holds as cached."""
    result, busy = FolderErasure(), set()
    for folder in run_folders(store):
        if folder.slug != current and folder.in_use():
            busy.add(folder.slug)
            result.busy.append(folder.location)
            continue
        _erase_in_folder(folder, user_ids, result)
    for path in leftover_files(store):  # files of unfinished writes: what no commit or record accounts for
        if path.split("/", 1)[0] not in busy:
            store.remove(path)
            result.leftovers += 1
    result.cache_dropped = sweep_cache(store)
    return result


def _erase_in_folder(folder: RunFolder, user_ids: np.ndarray, result: FolderErasure) -> None:
    held: dict[int, int] = {}
    has_snapshot = folder.has_snapshot()
    if has_snapshot:
        kept, held = folder.load_snapshot().without_users(user_ids)
        if held:
            folder.save_snapshot(kept)
            result.removed[SNAPSHOT_ROWS].update(held)
    if held or not has_snapshot:
        if folder.remove_derived():
            result.removed[DERIVED_FILES].update({person: 1 for person in held})
            log.info("%s: its Dataset, models and scores were removed (derived from people now erased)",
                     folder.location)
    for model_name in folder.checkpoint_names():
        result.removed[CHECKPOINTS].update(folder.forget_in_checkpoint(model_name, user_ids))
