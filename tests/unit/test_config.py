import pytest

from rec_models.config import PipelineConfig


def test_params_round_trip_and_coercion():
    config = PipelineConfig.from_params({"top_n": "15", "include_seen": "true", "mf_dim": 8, "mf_learning_rate": "0.05"})
    assert config.top_n == 15 and config.include_seen is True
    assert config.mf.dim == 8 and config.mf.learning_rate == 0.05
    again = PipelineConfig.from_params(config.to_params())
    assert again.to_params() == config.to_params()


@pytest.mark.parametrize("params, message", [
    ({"top_nn": 3}, "unknown pipeline params: top_nn"),
    ({"top_n": 0}, "top_n must be between"),
    ({"top_n": "ten"}, "param top_n must be int"),
    ({"include_seen": "maybe"}, "must be a boolean"),
    ({"mf_dim": 0}, "mf.dim must be"),
    ({"holdout_days": 5, "history_days": 9}, "history_days must exceed"),
    ({"serve_fit": "later"}, "serve_fit must be continue or refit"),
    ({"mf_batch_size": -1}, "mf.batch_size must be >= 0"),
    ({"torch_threads": -2}, "torch_threads must be >= 0"),
    ({"neumf_rerank_candidates": 0}, "neumf.rerank_candidates must be >= 1"),
    ({"two_tower_sampled_videos": 0}, "two_tower.sampled_videos must be >= 1"),
    ({"two_tower_user_activation": "relu"}, "two_tower.user_activation must be"),
    ({"two_tower_history_half_life": -1}, "two_tower.history_half_life must be >= 0"),
])
def test_bad_params_are_named(params, message):
    with pytest.raises(ValueError, match=message):
        PipelineConfig.from_params(params)
