"""The plain blocked top-k by dot product: the answer the fast search (rec_models.topn.pruned) must
give, and what the tests compare it with. Every score is computed; memory is one tile at a time."""

from __future__ import annotations

import torch
from scipy import sparse

from rec_models.topn.exclusions import Exclusions


def reference_top_k(
    queries: torch.Tensor,
    items: torch.Tensor,
    k: int,
    *,
    exclude: sparse.csr_matrix | None = None,
    exclude_items: torch.Tensor | None = None,
    column_block: int = 2048,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, indices), each (len(queries), k), best first; -inf where fewer than k candidates.
    Each column block is scored, its excluded pairs dropped, and merged into the running best k."""
    n_q, n_items = queries.shape[0], items.shape[0]
    k = min(k, n_items)
    device = queries.device
    best_v = torch.full((n_q, k), float("-inf"), device=device)
    best_i = torch.zeros((n_q, k), dtype=torch.int64, device=device)
    mask = Exclusions(n_q, device, exclude, exclude_items)
    everyone = torch.arange(n_q, device=device)
    for start in range(0, n_items, column_block):
        stop = min(start + column_block, n_items)
        scores = queries @ items[start:stop].T
        mask(scores, everyone, start)
        merged_v = torch.cat([best_v, scores], dim=1)
        merged_i = torch.cat([best_i, torch.arange(start, stop, device=device).expand(n_q, -1)], dim=1)
        best_v, order = torch.topk(merged_v, k, dim=1)
        best_i = torch.gather(merged_i, 1, order)
    return best_v, best_i
