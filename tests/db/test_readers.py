"""Readers never see an empty, partial or mixed result while runs publish, and a long reader
transaction does not stall the others behind the swap (lock_timeout + retry)."""

import dataclasses

from bench.faults import readers_check
from rec_models.config import PipelineConfig
from rec_models.data.synthetic import WorldSpec, generate_world
from tests.conftest import END



def test_readers_see_one_complete_run_throughout(database_factory, tmp_path):
    world = generate_world(WorldSpec(n_users=600, n_videos=150, n_views=12_000, n_domain_visits=15_000, seed=4), END)
    config = dataclasses.replace(PipelineConfig.from_params({"top_n": 5, "mf_epochs": 3}), run_root=str(tmp_path))
    report = readers_check(database_factory(), world, config, publishes=4, long_reader_s=2.0)
    print(f"reader queries {report.queries}, bad reads {report.bad_reads}, worst latency {report.max_stall_s:.3f} s")
    assert report.queries > 50
    assert report.bad_reads == 0
    assert report.problems == []  # no reader waited anywhere near the long transaction's length
