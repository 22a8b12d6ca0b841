"""Top-N search in blocks, so memory stays bounded whatever the catalogue size.

``top_n``: exact top-N by dot product (similar videos, user lists, evaluation), with threshold
pruning and norm-ordered termination (rec_models.topn_exact); queries that point the same way are
searched together, seeded with the items near their direction (``_Seeds``). ``top_n_scored``: the
same blocked search for any scorer (NeuMF's network). Runs on ``cuda`` when available.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from scipy import sparse

from rec_models.topn_exact import exact_top_k, filter_dtype

# Scores of one query block held at once: 4 MiB of float32 by default (measured fastest in bench/topn.py).
DEFAULT_BLOCK_BYTES = 4 * 2**20
# Catalogue columns scored per step by the exact search (memory: query block x this).
COLUMN_BLOCK = 1024
# Catalogue columns scored first in the norm-ordered scan.
FIRST_BLOCK = 1024
# Seeds (see _Seeds) pay off from this catalogue size; below it the scan is short anyway.
SEED_ABOVE_ITEMS = 4096
ANCHORS = 128
PER_ANCHOR = 128
SEED_LARGEST = 128
# Results held while a window of queries is searched in anchor order (bounds memory).
WINDOW_BYTES = 64 * 2**20


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class TopNBlock:
    """Results for queries [start, start + len): item indices and scores, best first.

    Where fewer than k candidates exist, trailing entries have score -inf; ``valid`` marks the rest.
    """

    start: int
    queries: np.ndarray  # query row numbers (into the query matrix) of this block
    items: np.ndarray  # (b, k) int64
    scores: np.ndarray  # (b, k) float32

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.scores)


def top_n(
    query_vectors: np.ndarray,
    item_vectors: np.ndarray,
    k: int,
    *,
    query_rows: np.ndarray | None = None,
    exclude: sparse.csr_matrix | None = None,
    exclude_items: np.ndarray | None = None,
    allowed_items: np.ndarray | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    device: torch.device | None = None,
) -> Iterator[TopNBlock]:
    """Yield, block by block, the k best items for each query by dot product.

    query_rows: which rows of query_vectors to search (default all); results come in that order.
    exclude: CSR indexed by query row; its nonzero columns are never returned for that query.
    exclude_items: per searched query, one item index never returned for it (itself, for item-item).
    allowed_items: bool mask over items; others are never returned.
    """
    device = device or pick_device()
    # Disallowed items are left out of the search altogether (cheaper than masking every tile).
    candidates = np.arange(item_vectors.shape[0]) if allowed_items is None else np.flatnonzero(allowed_items)
    vectors = item_vectors[candidates]
    # Items in descending norm order let a query stop once no remaining item can enter its top k.
    order = candidates[np.argsort(-np.linalg.norm(vectors, axis=1), kind="stable")]
    position = np.full(item_vectors.shape[0], -1, dtype=np.int64)  # catalogue index -> search position
    position[order] = np.arange(len(order))
    items_t = torch.as_tensor(np.ascontiguousarray(item_vectors[order], dtype=np.float32), device=device)
    low = filter_dtype(device.type)
    items_low = items_t.to(low) if low is not None else None
    exclude_sorted = exclude.tocsc()[:, order].tocsr() if exclude is not None else None
    rows = np.arange(query_vectors.shape[0]) if query_rows is None else np.asarray(query_rows)
    block = max(1, min(len(rows), block_bytes // (4 * COLUMN_BLOCK)))
    seeds = _Seeds(items_t, k) if len(order) >= SEED_ABOVE_ITEMS else None

    def search(window: np.ndarray, queries: torch.Tensor, own_items: np.ndarray | None, anchors: torch.Tensor | None,
               members: np.ndarray):
        """Top k of the window's queries at ``members`` (positions in the window)."""
        block_rows = window[members]
        q = queries[torch.as_tensor(members, device=device)]
        own = None
        if own_items is not None:
            own = torch.as_tensor(position[own_items[members]], device=device)
        if len(order) == 0:
            return torch.full((len(block_rows), 0), float("-inf")), torch.zeros((len(block_rows), 0), dtype=torch.int64)
        return exact_top_k(
            q, items_t, k, item_norms_sorted=True, exclude_items=own, low_precision=low, items_low=items_low,
            exclude=exclude_sorted[block_rows] if exclude_sorted is not None else None,
            column_block=COLUMN_BLOCK, first_block=FIRST_BLOCK,
            seed=seeds.seed(anchors[torch.as_tensor(members, device=device)]) if seeds is not None else None)

    workers = torch.get_num_threads() if device.type == "cpu" else 1
    window_rows = max(block, WINDOW_BYTES // (12 * max(k, 1)) // block * block)
    exclude_items = np.asarray(exclude_items) if exclude_items is not None else None
    for window_start in range(0, len(rows), window_rows):
        window = rows[window_start:window_start + window_rows]
        own_items = exclude_items[window_start:window_start + window_rows] if exclude_items is not None else None
        queries = torch.as_tensor(np.ascontiguousarray(query_vectors[window], dtype=np.float32), device=device)
        # Queries that point the same way share a block (and so a seed); results come back in order.
        anchors = seeds.best_anchor(queries) if seeds is not None else None
        grouped = np.argsort(anchors.cpu().numpy(), kind="stable") if seeds is not None else np.arange(len(window))
        parts = [grouped[s:s + block] for s in range(0, len(window), block)]
        values = torch.empty((len(window), min(k, len(order))), device=device)
        indices = torch.empty(values.shape, dtype=torch.int64, device=device)
        found = _map(lambda m: search(window, queries, own_items, anchors, m), parts, workers)
        for members, (v, i) in zip(parts, found):
            at = torch.as_tensor(members, device=device)
            values[at], indices[at] = v, i
        values, indices = values.cpu().numpy(), indices.cpu().numpy()
        for s in range(0, len(window), block):
            yield TopNBlock(start=window_start + s, queries=window[s:s + block],
                            items=order[indices[s:s + block]], scores=values[s:s + block])


def _map(function, parts: list, workers: int):
    """``map`` over parts; on CPU, side by side, one thread each: the pruning and merging between the
    matmuls are mostly single-threaded ops, so this keeps every core busy (measured 1.7x at 20k)."""
    if workers <= 1 or len(parts) <= 1:
        yield from map(function, parts)
        return
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool:
            yield from pool.map(function, parts)
    finally:
        torch.set_num_threads(workers)


class _Seeds:
    """Per query block, items likely to hold its top k, scored first so each threshold starts near its
    final value (the scan in norm order alone finds a query's neighbours only gradually).

    ANCHORS catalogue items, spread by a fixed random draw, stand for directions; each keeps its
    ``per_anchor`` best items. Queries are grouped by their best anchor, and a block's seed is its
    anchors' lists plus the largest-norm items."""

    def __init__(self, items: torch.Tensor, k: int):
        n_items = items.shape[0]
        picked = np.random.default_rng(0).choice(n_items, min(ANCHORS, n_items), replace=False)
        anchors = items[torch.as_tensor(np.sort(picked), device=items.device)]
        self.anchors = anchors / anchors.norm(dim=1, keepdim=True).clamp_min(1e-12)
        per_anchor = min(n_items, max(PER_ANCHOR, 2 * k))
        self.lists = torch.topk(self.anchors @ items.T, per_anchor, dim=1).indices
        self.largest = torch.arange(min(n_items, SEED_LARGEST), device=items.device)

    def best_anchor(self, queries: torch.Tensor) -> torch.Tensor:
        return (queries @ self.anchors.T).argmax(dim=1)

    def seed(self, anchors: torch.Tensor) -> torch.Tensor:
        """Sorted item positions for a block whose queries have these best anchors."""
        return torch.unique(torch.cat([self.lists[torch.unique(anchors)].flatten(), self.largest]))


def top_n_scored(
    score_rows: Callable[[np.ndarray], torch.Tensor],
    rows: np.ndarray,
    n_items: int,
    k: int,
    *,
    exclude: sparse.csr_matrix | None = None,
    exclude_items: np.ndarray | None = None,
    allowed_items: np.ndarray | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    device: torch.device | None = None,
) -> Iterator[TopNBlock]:
    """The blocked top-k search for any scorer: ``score_rows(rows)`` returns (len(rows), n_items)
    scores on ``device``. A model whose score is not a dot product (NeuMF) passes a scorer that runs
    the network on every (query, item) pair; dot products take the faster :func:`top_n`."""
    device = device or pick_device()
    k = min(k, n_items)
    penalty = None
    if allowed_items is not None:
        penalty = torch.zeros(n_items, device=device)
        penalty[torch.as_tensor(~np.asarray(allowed_items, dtype=bool), device=device)] = float("-inf")
    block = max(1, min(len(rows), block_bytes // (4 * max(n_items, 1))))
    for start in range(0, len(rows), block):
        block_rows = rows[start:start + block]
        scores = score_rows(block_rows)
        if penalty is not None:
            scores += penalty
        if exclude is not None:
            sub = exclude[block_rows]
            r = np.repeat(np.arange(len(block_rows)), np.diff(sub.indptr))
            scores[torch.as_tensor(r, device=device), torch.as_tensor(sub.indices, device=device)] = float("-inf")
        if exclude_items is not None:
            own = torch.as_tensor(exclude_items[start:start + block], device=device)
            scores[torch.arange(len(block_rows), device=device), own] = float("-inf")
        values, indices = torch.topk(scores, k, dim=1, sorted=True)
        yield TopNBlock(start=start, queries=block_rows, items=indices.cpu().numpy(), scores=values.cpu().numpy())


def flatten(block: TopNBlock, query_ids: np.ndarray, item_ids: np.ndarray) -> tuple[np.ndarray, ...]:
    """A block as output rows (query id, rank from 1, item id, score), dropping missing candidates."""
    valid = block.valid
    ranks = np.broadcast_to(np.arange(1, block.items.shape[1] + 1, dtype=np.int16), block.items.shape)
    queries = np.broadcast_to(query_ids[block.queries][:, None], block.items.shape)
    return queries[valid], ranks[valid], item_ids[block.items[valid]], block.scores[valid]
