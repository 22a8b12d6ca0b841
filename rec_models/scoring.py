"""The score task's work: route users, run the top-N searches, and stream the rows to chunk files
that the publish task loads (never the whole score matrix, never all rows in memory at once)."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rec_models.data.packed import load_packed, save_packed
from rec_models.config import PipelineConfig
from rec_models.data.dataset import Dataset
from rec_models.db.outputs import OutputTable
from rec_models.models.base import Recommender
from rec_models.names import POPULAR_VIDEOS, SIMILAR_VIDEOS, USER_RECOMMENDATIONS
from rec_models.threads import rebalance_torch_threads
from rec_models.topn import TopNBlock, flatten

log = logging.getLogger(__name__)

# Rows per chunk file: bounds the memory of both the writer and the loader.
CHUNK_ROWS = 1_000_000
_USER_PART = "users_"


class _ChunkWriter:
    def __init__(self, folder: Path, output: str, segment: str | None = None):
        self.folder, self.output, self.segment = folder, output, segment
        self.parts: list[dict[str, np.ndarray]] = []
        self.buffered = self.rows = 0
        self.groups: set[int] | int = 0
        self.files: list[str] = []

    def add(self, block: TopNBlock, query_ids: np.ndarray, item_ids: np.ndarray) -> None:
        group, rank, item, score = flatten(block, query_ids, item_ids)
        self.parts.append({"group": group, "rank": rank, "item": item, "score": score})
        self.buffered += len(group)
        self.groups += len(np.unique(group))
        if self.buffered >= CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.parts:
            return
        name = f"{self.output}_{self.segment or 'all'}_{len(self.files):05d}.npz"
        merged = {k: np.concatenate([p[k] for p in self.parts]) for k in self.parts[0]}
        save_packed(self.folder / name, **merged)
        self.files.append(name)
        self.rows += self.buffered
        self.parts, self.buffered = [], 0


@dataclass
class ServingModels:
    """Who serves what in one model run's outputs."""

    hot: Recommender  # users with views, and similar videos among watched videos
    warm: Recommender  # users known only by their features (domains)
    cold: Recommender  # everybody else, and the popular list
    content: Recommender | None = None  # places videos known only by their content (two-tower)

    def __post_init__(self) -> None:
        if not self.warm.serves_warm_users:
            raise ValueError(f"{self.warm.name} cannot serve warm users: it does not score users from features")
        if self.content is not None and not self.content.content_aware:
            raise ValueError(f"{self.content.name} cannot place new videos: it does not read their content")


def _learned_items(model: Recommender, watched: np.ndarray) -> np.ndarray:
    """Videos a model can score meaningfully: all of them for a content model, else the watched ones
    (an id-only model's vector for a never-watched video is its random initialisation)."""
    return np.ones_like(watched) if model.content_aware else watched


def _serving_context(data: Dataset, config: PipelineConfig):
    views = data.interactions()
    watched = np.asarray(views.sum(axis=0)).ravel() > 0
    return views, watched, (None if config.include_seen else views)


def write_item_outputs(data: Dataset, models: ServingModels, config: PipelineConfig, folder: Path) -> dict:
    """Similar videos (watched ones by the model's embeddings, new ones by their content) and the
    popular fallback list, into ``folder`` (replaced)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    _, watched, _ = _serving_context(data, config)
    active = data.video_active
    # What the run's health is measured against (rec.run_health): users and videos of the run's window.
    manifest: dict = {"files": {}, "groups": {}, "rows": {}, "known_users": int(data.n_users),
                      "active_videos": int(active.sum())}
    similar = _ChunkWriter(folder, SIMILAR_VIDEOS)
    hot_candidates = active & _learned_items(models.hot, watched)
    for block in models.hot.similar_items(np.flatnonzero(active & watched), config.top_n, allowed_items=hot_candidates):
        rebalance_torch_threads()
        similar.add(block, data.video_ids, data.video_ids)
    new_videos = np.flatnonzero(active & ~watched)
    if models.content is not None and len(new_videos):
        for block in models.content.similar_items(new_videos, config.top_n, allowed_items=active):
            rebalance_torch_threads()
        similar.add(block, data.video_ids, data.video_ids)
    _finish(manifest, SIMILAR_VIDEOS, [similar])
    popular = _ChunkWriter(folder, POPULAR_VIDEOS)
    for block in models.cold.recommend(data, np.zeros(1, dtype=np.int64), config.top_n, allowed_items=active):
        popular.add(block, np.zeros(1, dtype=np.int64), data.video_ids)
    _finish(manifest, POPULAR_VIDEOS, [popular])
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    log.info("scored videos: %s in %.2f s", manifest["rows"], time.perf_counter() - started)
    return manifest["rows"]


def shard_users(n_users: int, shard: int, shards: int) -> np.ndarray:
    """The user rows of one shard: contiguous, near-equal ranges (a retry of a shard redoes exactly them)."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is not in 0..{shards - 1}")
    return np.array_split(np.arange(n_users), shards)[shard]


def write_user_outputs(data: Dataset, models: ServingModels, config: PipelineConfig, folder: Path,
                       shard: int = 0, shards: int = 1) -> dict:
    """Top-N per user of one shard, routed explicitly: hot (views), warm (domains only), cold."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    views, watched, seen = _serving_context(data, config)
    active = data.video_active
    in_shard = np.zeros(data.n_users, dtype=bool)
    in_shard[shard_users(data.n_users, shard, shards)] = True
    segments = {name: rows[in_shard[rows]] for name, rows in data.segments(views, models.warm.warm_features()).items()}
    serving = {"hot": models.hot, "warm": models.warm, "cold": models.cold}
    manifest: dict = {"files": {}, "groups": {}, "rows": {}, "shard": shard, "shards": shards}
    writers = []
    for segment, users in segments.items():
        writer = _ChunkWriter(folder, USER_RECOMMENDATIONS, segment)
        model = serving[segment]
        if len(users):
            segment_started = time.perf_counter()
            allowed = active & _learned_items(model, watched)
            for block in model.recommend(data, users, config.top_n, seen=seen, allowed_items=allowed):
                rebalance_torch_threads()  # the video pass beside this one may have finished: its core is free
                writer.add(block, data.user_ids, data.video_ids)
            seconds = time.perf_counter() - segment_started
            log.info("shard %d/%d, %s users: %d served by %s in %.2f s (%.0f users/s)", shard + 1, shards, segment,
                     len(users), model.name, seconds, len(users) / max(seconds, 1e-9))
        writers.append(writer)
    _finish(manifest, USER_RECOMMENDATIONS, writers)
    manifest["segments"] = {s: int(len(u)) for s, u in segments.items()}
    manifest["models"] = {"hot": models.hot.name, "warm": models.warm.name, "cold": models.cold.name}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    log.info("scored users of shard %d/%d: %s in %.2f s", shard + 1, shards, manifest["rows"],
             time.perf_counter() - started)
    return manifest["rows"]


ITEMS_PART = "items"  # a model's scored videos (similar and popular) inside its scores folder


def user_part_name(shard: int) -> str:
    """One shard of a model's user lists inside its scores folder (users_0000, ...)."""
    return f"{_USER_PART}{shard:04d}"


def items_part(folder: Path) -> Path:
    return folder / ITEMS_PART


def user_part(folder: Path, shard: int) -> Path:
    return folder / user_part_name(shard)


def output_parts(folder: Path) -> list[dict]:
    """The manifests of a model's scored parts (videos, and every user shard), checked complete."""
    items = items_part(folder) / "manifest.json"
    if not items.exists():
        raise FileNotFoundError(f"{folder} has no scored videos: run the score step first")
    parts = [{"dir": items.parent, **json.loads(items.read_text())}]
    shards = [{"dir": p.parent, **json.loads(p.read_text())}
              for p in sorted(folder.glob(f"{_USER_PART}*/manifest.json"))]
    expected = {s["shards"] for s in shards}
    if len(expected) != 1 or sorted(s["shard"] for s in shards) != list(range(expected.pop())):
        raise FileNotFoundError(f"{folder}: user shards incomplete ({[(s['shard'], s['shards']) for s in shards]})")
    return parts + shards


def catalogue_counts(folder: Path) -> dict[str, int]:
    """Users and active videos of the run's window, as the score step saw them."""
    manifest = json.loads((items_part(folder) / "manifest.json").read_text())
    return {"known_users": manifest["known_users"], "active_videos": manifest["active_videos"]}


def scored_groups(folder: Path) -> dict[str, int | None]:
    totals: dict[str, int | None] = {}
    for part in output_parts(folder):
        for name, groups in part["groups"].items():
            totals[name] = None if groups is None else (totals.get(name) or 0) + groups
    return totals


def _finish(manifest: dict, output: str, writers: list[_ChunkWriter]) -> None:
    for w in writers:
        w.flush()
    manifest["files"][output] = [{"file": f, "segment": w.segment} for w in writers for f in w.files]
    manifest["rows"][output] = sum(w.rows for w in writers)
    manifest["groups"][output] = sum(w.groups for w in writers) if output != POPULAR_VIDEOS else None


def read_output_chunks(folder: Path, output: OutputTable, model_run_id: int) -> Iterator[list]:
    """Chunks of columns in the output table's COPY order, over every scored part."""
    for part in output_parts(folder):
        for entry in part["files"].get(output.name, []):
            chunk = load_packed(part["dir"] / entry["file"])
            run = np.full(len(chunk["rank"]), model_run_id, dtype=np.int64)
            if output.name == SIMILAR_VIDEOS:
                yield [run, chunk["group"], chunk["rank"], chunk["item"], chunk["score"]]
            elif output.name == USER_RECOMMENDATIONS:
                yield [run, chunk["group"], chunk["rank"], chunk["item"], chunk["score"], entry["segment"]]
            else:
                yield [run, chunk["rank"], chunk["item"], chunk["score"]]
