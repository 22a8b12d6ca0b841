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

from rec_models.config import PipelineConfig
from rec_models.data.dataset import Dataset
from rec_models.db.outputs import OutputTable
from rec_models.models.base import Recommender
from rec_models.topn import TopNBlock, flatten

log = logging.getLogger(__name__)

# Rows per chunk file: bounds the memory of both the writer and the loader.
CHUNK_ROWS = 1_000_000


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
        np.savez(self.folder / name, **merged)
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


def _learned_items(model: Recommender, watched: np.ndarray) -> np.ndarray:
    """Videos a model can score meaningfully: all of them for a content model, else the watched ones
    (an id-only model's vector for a never-watched video is its random initialisation)."""
    return np.ones_like(watched) if model.content_aware else watched


def write_outputs(data: Dataset, models: ServingModels, config: PipelineConfig, folder: Path) -> dict[str, int]:
    """Write similar videos, user recommendations (with segment) and the popular fallback list."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    views = data.interactions()
    active = data.video_active
    seen = None if config.include_seen else views
    watched = np.asarray(views.sum(axis=0)).ravel() > 0
    manifest: dict = {"files": {}, "groups": {}, "rows": {}}

    # Similar videos: watched ones by the model's embeddings; new ones by their content, if we can.
    similar = _ChunkWriter(folder, "similar_videos")
    hot_candidates = active & _learned_items(models.hot, watched)
    for block in models.hot.similar_items(np.flatnonzero(active & watched), config.top_n, allowed_items=hot_candidates):
        similar.add(block, data.video_ids, data.video_ids)
    new_videos = np.flatnonzero(active & ~watched)
    if models.content is not None and len(new_videos):
        for block in models.content.similar_items(new_videos, config.top_n, allowed_items=active):
            similar.add(block, data.video_ids, data.video_ids)
    _finish(manifest, "similar_videos", [similar])

    # User recommendations, routed explicitly by what we know of each user.
    known_features = models.warm.known_features() if hasattr(models.warm, "known_features") else np.zeros(0, int)
    segments = data.segments(views, known_features)
    serving = {"hot": models.hot, "warm": models.warm, "cold": models.cold}
    writers = []
    for segment, users in segments.items():
        writer = _ChunkWriter(folder, "user_recommendations", segment)
        model = serving[segment]
        allowed = active & _learned_items(model, watched)
        if len(users):
            segment_started = time.perf_counter()
            for block in model.recommend(data, users, config.top_n, seen=seen, allowed_items=allowed):
                writer.add(block, data.user_ids, data.video_ids)
            log.info("%s users: %d served by %s in %.2f s", segment, len(users), model.name,
                     time.perf_counter() - segment_started)
        writers.append(writer)
    _finish(manifest, "user_recommendations", writers)

    popular = _ChunkWriter(folder, "popular_videos")
    for block in models.cold.recommend(data, np.zeros(1, dtype=np.int64), config.top_n, allowed_items=active):
        popular.add(block, np.zeros(1, dtype=np.int64), data.video_ids)
    _finish(manifest, "popular_videos", [popular])
    manifest["segments"] = {s: int(len(u)) for s, u in segments.items()}
    manifest["models"] = {"hot": models.hot.name, "warm": models.warm.name, "cold": models.cold.name,
                          "content": models.content.name if models.content else None}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    log.info("scored %s in %.2f s", manifest["rows"], time.perf_counter() - started)
    return manifest["rows"]


def _finish(manifest: dict, output: str, writers: list[_ChunkWriter]) -> None:
    for w in writers:
        w.flush()
    manifest["files"][output] = [{"file": f, "segment": w.segment} for w in writers for f in w.files]
    manifest["rows"][output] = sum(w.rows for w in writers)
    manifest["groups"][output] = sum(w.groups for w in writers) if output != "popular_videos" else None


def read_output_chunks(folder: Path, output: OutputTable, model_run_id: int) -> Iterator[list]:
    """Chunks of columns in the output table's COPY order."""
    manifest = json.loads((folder / "manifest.json").read_text())
    for entry in manifest["files"][output.name]:
        with np.load(folder / entry["file"]) as chunk:
            n = len(chunk["rank"])
            run = np.full(n, model_run_id, dtype=np.int64)
            if output.name == "similar_videos":
                yield [run, chunk["group"], chunk["rank"], chunk["item"], chunk["score"]]
            elif output.name == "user_recommendations":
                yield [run, chunk["group"], chunk["rank"], chunk["item"], chunk["score"], entry["segment"]]
            else:
                yield [run, chunk["rank"], chunk["item"], chunk["score"]]
