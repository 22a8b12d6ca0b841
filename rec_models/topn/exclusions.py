"""Pairs a search must never return: a CSR of (query, item) pairs, and one item per query (itself)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import sparse


class Exclusions:
    """Sets excluded (query, item) pairs of a score tile to -inf."""

    def __init__(self, n_q: int, device: torch.device, exclude: sparse.csr_matrix | None,
                 exclude_items: torch.Tensor | None):
        self.n_q, self.device = n_q, device
        self.pairs = _by_column(exclude) if exclude is not None and exclude.nnz else None
        self.own = exclude_items

    def __call__(self, tile: torch.Tensor, rows: torch.Tensor, columns: int | torch.Tensor) -> None:
        """``rows``: the query rows of the tile's rows; ``columns``: the item position of the tile's
        column 0 (a contiguous block), or the sorted positions of every column."""
        if self.pairs is None and self.own is None:
            return
        width = tile.shape[1]
        listed = not isinstance(columns, int)
        first, stop = (int(columns[0]), int(columns[-1]) + 1) if listed else (columns, columns + width)
        if self.pairs is not None:
            r, c = self.pairs(first, stop)
            if len(r):
                r_t = self._tile_rows(rows)[torch.as_tensor(r, device=self.device)]
                c_t = self._tile_columns(torch.as_tensor(c, device=self.device), columns)
                keep = (r_t >= 0) & (c_t >= 0)
                tile[r_t[keep], c_t[keep]] = float("-inf")
        if self.own is not None:
            own = self._tile_columns(self.own[rows], columns)
            inside = (own >= 0) & (own < width)
            tile[torch.arange(rows.shape[0], device=self.device)[inside], own[inside]] = float("-inf")

    def _tile_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Query row -> row in the tile (-1: not in it)."""
        position = torch.full((self.n_q,), -1, dtype=torch.int64, device=self.device)
        position[rows] = torch.arange(rows.shape[0], device=self.device)
        return position

    @staticmethod
    def _tile_columns(items: torch.Tensor, columns: int | torch.Tensor) -> torch.Tensor:
        """Item position -> column in the tile (-1 or out of range: not in it)."""
        if isinstance(columns, int):
            return items - columns
        at = torch.searchsorted(columns, items).clamp_(max=columns.shape[0] - 1)
        return torch.where(columns[at] == items, at, -1)


def _by_column(matrix: sparse.csr_matrix):
    """A function (start, stop) -> (rows, cols) of the nonzeros with start <= col < stop (None: all)."""
    coo = matrix.tocoo()
    order = np.argsort(coo.col, kind="stable")
    cols, rows = coo.col[order].astype(np.int64), coo.row[order].astype(np.int64)

    def between(start: int, stop: int | None):
        a, b = np.searchsorted(cols, start), len(cols) if stop is None else np.searchsorted(cols, stop)
        return rows[a:b], cols[a:b]

    return between
