"""The unit every top-N search yields (a block of queries with their k best items), and the plain
blocked search for any scorer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from scipy import sparse

# Scores of one query block held at once: 4 MiB of float32 by default (measured fastest in bench/topn.py).
DEFAULT_BLOCK_BYTES = 4 * 2**20


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
    the network on every (query, item) pair; dot products take the faster :func:`rec_models.topn.top_n`."""
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
