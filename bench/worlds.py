"""The synthetic worlds the benchmarks run on, by size (numpy only: bench.device runs where there is
no PostgreSQL). XS is a smoke size for trying a benchmark itself."""

from __future__ import annotations

from rec_models.data.synthetic import WorldSpec

SIZES = {
    "XS": WorldSpec(n_users=1_500, n_videos=300, n_views=30_000, n_domain_visits=40_000, seed=5),
    "S": WorldSpec(n_users=10_000, n_videos=2_000, n_views=200_000, n_domain_visits=300_000, seed=21),
    "M": WorldSpec(n_users=100_000, n_videos=20_000, n_views=2_000_000, n_domain_visits=3_000_000, seed=22),
    "L": WorldSpec(n_users=1_000_000, n_videos=100_000, n_views=20_000_000, n_domain_visits=30_000_000, seed=23),
}
