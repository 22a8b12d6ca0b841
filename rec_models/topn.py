"""Exact top-N by dot product, in query blocks so memory stays bounded (block x catalogue scores).

Used for similar videos (item . item), user recommendations (user . item) and evaluation alike.
Runs on ``cuda`` when available.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from scipy import sparse

# Scores of one query block held at once: 64 MiB of float32 by default.
DEFAULT_BLOCK_BYTES = 64 * 2**20


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
    items_t = torch.as_tensor(np.ascontiguousarray(item_vectors, dtype=np.float32), device=device)

    def dot_scores(rows: np.ndarray) -> torch.Tensor:
        q = torch.as_tensor(np.ascontiguousarray(query_vectors[rows], dtype=np.float32), device=device)
        return q @ items_t.T

    rows = np.arange(query_vectors.shape[0]) if query_rows is None else np.asarray(query_rows)
    yield from top_n_scored(dot_scores, rows, item_vectors.shape[0], k, exclude=exclude,
                            exclude_items=exclude_items, allowed_items=allowed_items,
                            block_bytes=block_bytes, device=device)


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
    scores on ``device``. Dot products use it through :func:`top_n`; a model whose score is not a
    dot product (NeuMF) passes a scorer that runs the network on every (query, item) pair."""
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
