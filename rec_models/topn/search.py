"""Exact top-N by dot product over a whole catalogue (similar videos, user lists, evaluation), in
bounded memory whatever its size.

Queries are searched in windows (at most WINDOW_BYTES of results); within a window, queries that
point the same way share a block and so a seed (:class:`AnchorSeeds`), and blocks are searched side
by side on CPU, one thread each. Each block runs :func:`rec_models.topn.pruned.exact_top_k`. Results
come back in query order, block by block. Runs on ``cuda`` when available.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from scipy import sparse

from rec_models.threads import torch_threads
from rec_models.topn.blocks import DEFAULT_BLOCK_BYTES, TopNBlock, pick_device
from rec_models.topn.pruned import exact_top_k, filter_dtype

# Catalogue columns scored per step by the exact search (memory: query block x this).
COLUMN_BLOCK = 1024
# Catalogue columns scored first in the norm-ordered scan.
FIRST_BLOCK = 1024
# Seeds pay off from this catalogue size; below it the scan is short anyway.
SEED_ABOVE_ITEMS = 4096
# Anchor directions, the best items kept per anchor, and the largest-norm items every seed holds.
ANCHORS = 128
PER_ANCHOR = 128
SEED_LARGEST = 128
# Results held while a window of queries is searched in anchor order (bounds memory).
WINDOW_BYTES = 64 * 2**20


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
    seeds = AnchorSeeds(items_t, k) if len(order) >= SEED_ABOVE_ITEMS else None

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
        found = _side_by_side(lambda m: search(window, queries, own_items, anchors, m), parts, workers)
        for members, (v, i) in zip(parts, found):
            at = torch.as_tensor(members, device=device)
            values[at], indices[at] = v, i
        values, indices = values.cpu().numpy(), indices.cpu().numpy()
        for s in range(0, len(window), block):
            yield TopNBlock(start=window_start + s, queries=window[s:s + block],
                            items=order[indices[s:s + block]], scores=values[s:s + block])


def _side_by_side(function, parts: list, workers: int) -> list:
    """``[function(p) for p in parts]``; on CPU, side by side, one PyTorch thread each: the pruning and
    merging between the matmuls are mostly single-threaded ops, so this keeps every core busy
    (measured 1.7x at 20k). The thread count is restored afterwards."""
    if workers <= 1 or len(parts) <= 1:
        return [function(p) for p in parts]
    with torch_threads(1), ThreadPoolExecutor(workers) as pool:
        return list(pool.map(function, parts))


class AnchorSeeds:
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
