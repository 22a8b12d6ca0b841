"""Exact top-k by dot product, faster than scoring-then-sorting everything.

For each block of queries the catalogue is scanned in column blocks; the running k-th best score of
every query is a threshold, and a column block is only searched (topk) for the queries where some
score beats it. After the first blocks almost none do, so the cost approaches the matmul alone.
With items in descending norm order, a query whose |q| * (largest remaining item norm) cannot beat
its k-th best score is finished early (norm-ordered termination). Ties at the k-th score aside, the
result equals a full sort. Memory: one (query block x column block) score tile at a time.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import sparse


def exact_top_k(
    queries: torch.Tensor,
    items: torch.Tensor,
    k: int,
    *,
    item_norms_sorted: bool = False,
    exclude: sparse.csr_matrix | None = None,
    exclude_items: torch.Tensor | None = None,
    penalty: torch.Tensor | None = None,
    column_block: int = 4096,
    first_block: int = 512,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, indices), each (len(queries), k), best first; -inf where fewer than k candidates.

    exclude: CSR (len(queries) x n_items) of pairs never returned; exclude_items: one item per query
    never returned (itself); penalty: per item 0 or -inf (items never returned).
    item_norms_sorted: items are in descending L2-norm order (enables early termination).
    """
    n_q, n_items = queries.shape[0], items.shape[0]
    k = min(k, n_items)
    device = queries.device
    best_v = torch.full((n_q, k), float("-inf"), device=device)
    best_i = torch.zeros((n_q, k), dtype=torch.int64, device=device)
    threshold = best_v[:, -1].clone()
    q_norm = queries.norm(dim=1) if item_norms_sorted else None
    item_norm = items.norm(dim=1) if item_norms_sorted else None
    active = torch.ones(n_q, dtype=torch.bool, device=device)
    excluded = _by_column(exclude) if exclude is not None else None
    # A small first block seeds every threshold cheaply (with norm order: from the largest items).
    starts = [0, *range(min(first_block, n_items), n_items, column_block)]
    for start, stop in zip(starts, [*starts[1:], n_items]):
        rows = active.nonzero().squeeze(1) if item_norms_sorted else None
        q = queries if rows is None else queries[rows]
        if q.shape[0] == 0:
            break
        scores = q @ items[start:stop].T
        if penalty is not None:
            scores += penalty[start:stop]
        local_rows = torch.arange(q.shape[0], device=device)
        global_rows = local_rows if rows is None else rows
        if excluded is not None:
            r, c = excluded(start, stop)
            if len(r):
                r_t, c_t = torch.as_tensor(r, device=device), torch.as_tensor(c - start, device=device)
                if rows is not None:  # map global rows to positions among the active ones
                    position = torch.full((n_q,), -1, dtype=torch.int64, device=device)
                    position[rows] = local_rows
                    r_t = position[r_t]
                    keep = r_t >= 0
                    r_t, c_t = r_t[keep], c_t[keep]
                scores[r_t, c_t] = float("-inf")
        if exclude_items is not None:
            own = exclude_items[global_rows] - start
            inside = (own >= 0) & (own < stop - start)
            scores[local_rows[inside], own[inside]] = float("-inf")
        # Only queries with some score above their k-th best need a search of this block.
        hit = (scores > threshold[global_rows, None]).any(dim=1)
        if hit.any():
            hit_rows = hit.nonzero().squeeze(1)
            sub = scores[hit_rows]
            kk = min(k, sub.shape[1])
            v, i = torch.topk(sub, kk, dim=1)
            g = global_rows[hit_rows]
            merged_v = torch.cat([best_v[g], v], dim=1)
            merged_i = torch.cat([best_i[g], i + start], dim=1)
            top_v, order = torch.topk(merged_v, k, dim=1)
            best_v[g] = top_v
            best_i[g] = torch.gather(merged_i, 1, order)
            threshold[g] = top_v[:, -1]
        if item_norms_sorted and stop < n_items:
            # No remaining item can beat the k-th best: |q . x| <= |q| |x| <= |q| * (next norm).
            bound = q_norm * item_norm[stop]
            active &= bound > threshold
    # Rows whose best entries were never filled keep -inf, like the plain search.
    return best_v, best_i


def _by_column(matrix: sparse.csr_matrix):
    """A function (start, stop) -> (rows, cols) of the nonzeros with start <= col < stop."""
    coo = matrix.tocoo()
    order = np.argsort(coo.col, kind="stable")
    cols, rows = coo.col[order].astype(np.int64), coo.row[order].astype(np.int64)

    def between(start: int, stop: int):
        a, b = np.searchsorted(cols, start), np.searchsorted(cols, stop)
        return rows[a:b], cols[a:b]

    return between
