"""Exact top-k by dot product, faster than scoring-then-sorting everything.

For each block of queries the catalogue is scanned in column blocks; the running k-th best score of
every query is a threshold, and only the scores that beat it are gathered and merged. After the
first blocks few do, so the cost approaches the matmul alone. With items in descending norm order, a
query whose |q| * (largest remaining item norm) cannot beat its k-th best score is finished early
(norm-ordered termination). An optional seed (items likely to be near the queries) is scored first,
so thresholds start close to final; the scan then skips the seed's items.

Where bfloat16 matmul is measured faster than float32 (CPUs with AVX512-BF16, GPUs), that test runs
on a bfloat16 tile with a proven error bound: |approx - exact| <= FILTER_ERROR * |q| * |x|. A query
whose approximate block maximum plus that bound cannot beat its threshold provably has no candidate
in the block; the few that might are rescored in float32, so every returned score and item is the
float32 answer. Ties at the k-th score aside, the result equals a full sort. Memory: one
(query block x column block) tile at a time.
"""

from __future__ import annotations

import time
from functools import cache

import numpy as np
import torch
from scipy import sparse

# bfloat16 rounds each input and the output with unit roundoff 2^-8 (fp32 accumulation in between):
# per Cauchy-Schwarz the error is <= ~3u |q||x|; 4u leaves room for non-IEEE rounding in the kernel.
FILTER_ERROR = 4 * 2.0 ** -8


@cache
def filter_dtype(device_type: str) -> torch.dtype | None:
    """bfloat16 where a bfloat16 matmul of the scoring shape is measured clearly faster than float32 on
    this device (AVX512-BF16 or AMX CPUs, GPUs), else None (the test runs on the exact tile)."""
    device = torch.device(device_type)
    try:
        noise = torch.Generator(device=device).manual_seed(0)  # private: the global RNG stays untouched
        q = torch.randn(1024, 64, device=device, generator=noise)
        x = torch.randn(2048, 64, device=device, generator=noise)
        seconds = {}
        for dtype in (torch.float32, torch.bfloat16):
            a, b = q.to(dtype), x.to(dtype)
            a @ b.T
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            for _ in range(5):
                a @ b.T
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds[dtype] = time.perf_counter() - started
    except RuntimeError:  # no bfloat16 matmul on this device
        return None
    return torch.bfloat16 if seconds[torch.bfloat16] < 0.6 * seconds[torch.float32] else None


def exact_top_k(
    queries: torch.Tensor,
    items: torch.Tensor,
    k: int,
    *,
    item_norms_sorted: bool = False,
    exclude: sparse.csr_matrix | None = None,
    exclude_items: torch.Tensor | None = None,
    column_block: int = 2048,
    first_block: int = 512,
    low_precision: torch.dtype | None | str = "auto",
    items_low: torch.Tensor | None = None,
    seed: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, indices), each (len(queries), k), best first; -inf where fewer than k candidates.

    exclude: CSR (len(queries) x n_items) of pairs never returned; exclude_items: one item per query
    never returned (itself; negative: none). item_norms_sorted: items are in descending L2-norm order
    (enables early termination). low_precision: dtype of the pruning test ("auto": measured, None: float32);
    items_low: items already in that dtype (saves converting the catalogue for every query block).
    seed: sorted item positions likely to score high for these queries, scored first (in float32) so
    every threshold starts near its final value; the scan then skips them.
    """
    n_q, n_items = queries.shape[0], items.shape[0]
    k = min(k, n_items)
    device = queries.device
    if low_precision == "auto":
        low_precision = filter_dtype(device.type)
    best_v = torch.full((n_q, k), float("-inf"), device=device)
    best_i = torch.zeros((n_q, k), dtype=torch.int64, device=device)
    threshold = best_v[:, -1].clone()
    q_norm = queries.norm(dim=1)
    item_norm = items.norm(dim=1)
    active = torch.ones(n_q, dtype=torch.bool, device=device)
    mask = _Exclusions(n_q, device, exclude, exclude_items)
    if low_precision is not None:
        queries_low = queries.to(low_precision)
        items_low = items.to(low_precision) if items_low is None else items_low
    hit_share = 1.0
    scan = None  # the item positions left to search, in order (None: the whole catalogue)
    if seed is not None and seed.shape[0]:
        everyone = torch.arange(n_q, device=device)
        scores = queries @ items[seed].T
        mask(scores, everyone, seed)
        _merge(best_v, best_i, threshold, everyone, scores, seed)
        hit_share = 0.0  # thresholds are now close to final: the scan starts with the pre-test
        left = torch.ones(n_items, dtype=torch.bool, device=device)
        left[seed] = False
        scan = left.nonzero().squeeze(1)
    n_scan = n_items if scan is None else scan.shape[0]
    # A small first block seeds every threshold cheaply (with norm order: from the largest items).
    starts = [0, *range(min(first_block, n_scan), n_scan, column_block)]
    for start, stop in zip(starts, [*starts[1:], n_scan]):
        rows = active.nonzero().squeeze(1) if item_norms_sorted else torch.arange(n_q, device=device)
        n_active = rows.shape[0]
        if n_active == 0:
            break
        # The block's items: a slice of the catalogue, or (after a seed) the listed positions.
        block = slice(start, stop) if scan is None else scan[start:stop]
        columns = start if scan is None else block
        # The pre-test pays off only where most queries have nothing in the block (not the first ones).
        if low_precision is not None and hit_share < LOW_PRECISION_BELOW_HIT_SHARE:
            approx = queries_low[rows] @ items_low[block].T
            mask(approx, rows, columns)
            block_norm = item_norm[block][0] if item_norms_sorted else item_norm[block].max()
            rows = rows[_may_beat(approx, threshold[rows] - FILTER_ERROR * q_norm[rows] * block_norm)]
        if rows.shape[0]:
            scores = queries[rows] @ items[block].T
            mask(scores, rows, columns)
            hit_share = _merge(best_v, best_i, threshold, rows, scores, columns) / n_active
        else:
            hit_share = 0.0
        if item_norms_sorted and stop < n_scan:
            # No remaining item can beat the k-th best: |q . x| <= |q| |x| <= |q| * (next norm).
            active &= q_norm * item_norm[stop if scan is None else scan[stop]] > threshold
    # Rows whose best entries were never filled keep -inf, like the plain search.
    return best_v, best_i


def _may_beat(approx: torch.Tensor, cut: torch.Tensor) -> torch.Tensor:
    """Rows of a low-precision tile with an entry above their ``cut`` (= threshold minus the error
    bound); rows without one provably have no candidate. For a positive cut only positive entries
    matter, and positive bfloat16 values order as their bits read as int16: that row maximum is ~9x
    faster than a bfloat16 one. The cut is stepped down one bfloat16 value, so no row is missed.
    Rows with a cut <= 0 take the plain maximum."""
    if approx.dtype != torch.bfloat16:
        return approx.amax(dim=1).float() > cut
    positive = cut > 0
    cut_bits = cut.clamp_min(0).to(torch.bfloat16).view(torch.int16) - 1
    beats = approx.view(torch.int16).amax(dim=1) > cut_bits
    if not bool(positive.all()):
        rest = (~positive).nonzero().squeeze(1)
        beats[rest] = approx[rest].amax(dim=1).float() > cut[rest]
    return beats


# Below this share of queries with a candidate in the last block, the bfloat16 pre-test runs first.
LOW_PRECISION_BELOW_HIT_SHARE = 0.5
# Rows with at most this many scores above their threshold merge just those (no topk over the tile).
SPARSE_CANDIDATES = 256


def _merge(best_v, best_i, threshold, rows, scores, start: int | torch.Tensor) -> int:
    """Merge a block's scores (for ``rows``) into the running best k of those rows, in place; returns
    how many of the rows had a score above their k-th best. ``start``: the item position of column 0,
    or every column's position (a seed tile).

    After the first blocks a row has only a handful of scores above its k-th best, and a topk over the
    whole tile costs several times the matmul; those few are gathered (nonzero) and merged instead.
    Rows with no k-th best yet get a provable lower bound for it from the tile (:func:`_seed`), so
    they are gathered too; rows with many candidates, or no bound, take a topk of their tile rows."""
    thresholds = threshold[rows]
    unseeded = torch.isneginf(thresholds)
    if bool(unseeded.any()):
        thresholds = thresholds.clone()
        thresholds[unseeded] = _seed(scores[unseeded], best_v.shape[1])
    n_hit = 0
    unbounded = torch.isneginf(thresholds)
    if bool(unbounded.any()):
        n_hit += _merge_topk(best_v, best_i, threshold, rows, scores, start, unbounded.nonzero().squeeze(1))
        if n_hit == rows.shape[0]:
            return n_hit
        bounded = (~unbounded).nonzero().squeeze(1)
        rows, scores, thresholds = rows[bounded], scores[bounded], thresholds[bounded]
    r, c = (scores > thresholds[:, None]).nonzero(as_tuple=True)  # row-major: a row's are contiguous
    counts = torch.bincount(r, minlength=rows.shape[0])
    many = counts > SPARSE_CANDIDATES
    if bool(many.any()):
        n_hit += _merge_topk(best_v, best_i, threshold, rows, scores, start, many.nonzero().squeeze(1))
        keep = ~many[r]
        r, c = r[keep], c[keep]
    return n_hit + _merge_pairs(best_v, best_i, threshold, rows, r, _column_ids(start, c), scores[r, c])


def _seed(scores: torch.Tensor, k: int) -> torch.Tensor:
    """A lower bound on each row's k-th best score, without a topk over the tile: split the row into
    m >= 2k chunks; the chunk maxima are m distinct scores, so the k-th largest of them is at most the
    row's k-th largest. Stepped down one float so that at least k scores lie strictly above it.
    -inf where the tile is too narrow for the bound to pay off, or fewer than k chunks are finite."""
    n, width = scores.shape
    size = 1 << max(0, (width // (2 * k)).bit_length() - 1)  # a power of two: chunks tile the row
    if size < 4 or scores.stride(1) != 1:
        return torch.full((n,), float("-inf"), device=scores.device)
    chunks = width // size
    chunk_max = torch.as_strided(scores, (n, chunks, size), (scores.stride(0), size, 1)).amax(dim=2)
    kth = torch.topk(chunk_max, k, dim=1, sorted=False).values.amin(dim=1)
    return torch.nextafter(kth, torch.tensor(float("-inf"), device=scores.device))


def _column_ids(start: int | torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """Item positions of tile columns: a tile of the contiguous block from ``start``, or of the
    positions listed in ``start`` (a seed)."""
    return columns + start if isinstance(start, int) else start[columns]


def _merge_topk(best_v, best_i, threshold, rows, scores, start, dense) -> int:
    """Merge the tile's top k of the tile rows ``dense`` (rows with many candidates, or no k-th best yet)."""
    v, i = torch.topk(scores[dense], min(best_v.shape[1], scores.shape[1]), dim=1)
    _merge_rows(best_v, best_i, threshold, rows[dense], v, _column_ids(start, i))
    return dense.shape[0]


def _merge_pairs(best_v, best_i, threshold, rows, r, items, values) -> int:
    """Merge candidate pairs (tile row ``r``, catalogue position ``items``, exact ``values``), grouped by
    row in ascending ``r``, into the running best k; only values above the row's k-th best count.
    Returns how many rows had one."""
    keep = values > threshold[rows[r]]
    r, items, values = r[keep], items[keep], values[keep]
    if r.shape[0] == 0:
        return 0
    counts = torch.bincount(r, minlength=rows.shape[0])
    has = counts > 0
    hit_rows = has.nonzero().squeeze(1)
    compact = torch.cumsum(has, 0) - 1  # row in the tile -> row among those with candidates
    hit_counts = counts[hit_rows]
    rr = compact[r]
    slot = torch.arange(r.shape[0], device=values.device) - (torch.cumsum(hit_counts, 0) - hit_counts)[rr]
    most = int(hit_counts.max())
    v = torch.full((hit_rows.shape[0], most), float("-inf"), device=values.device)
    i = torch.zeros((hit_rows.shape[0], most), dtype=torch.int64, device=values.device)
    v[rr, slot] = values
    i[rr, slot] = items
    _merge_rows(best_v, best_i, threshold, rows[hit_rows], v, i)
    return hit_rows.shape[0]


def _merge_rows(best_v, best_i, threshold, rows, v, i) -> None:
    merged_v = torch.cat([best_v[rows], v], dim=1)
    merged_i = torch.cat([best_i[rows], i], dim=1)
    top_v, order = torch.topk(merged_v, best_v.shape[1], dim=1)
    best_v[rows] = top_v
    best_i[rows] = torch.gather(merged_i, 1, order)
    threshold[rows] = top_v[:, -1]


class _Exclusions:
    """Sets excluded (query, item) pairs of a score tile to -inf: a CSR of pairs and one item per query."""

    def __init__(self, n_q: int, device: torch.device, exclude: sparse.csr_matrix | None,
                 exclude_items: torch.Tensor | None):
        self.n_q, self.device = n_q, device
        self.pairs = _by_column(exclude) if exclude is not None and exclude.nnz else None
        self.own = exclude_items

    def __call__(self, tile: torch.Tensor, rows: torch.Tensor, columns: int | torch.Tensor) -> None:
        """``columns``: the item position of the tile's column 0 (a contiguous block), or the sorted
        positions of every column."""
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
