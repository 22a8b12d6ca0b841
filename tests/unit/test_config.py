import pytest

from rec_models.config import PipelineConfig, param_specs
from rec_models.names import MODEL_NAMES


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


def test_every_operator_setting_is_a_param_and_nothing_else():
    """The params (DAG, CLI) are exactly the config's operator fields; the run folder is not one."""
    specs = param_specs()
    assert set(specs) == set(PipelineConfig().to_params())
    assert "run_root" not in specs
    with pytest.raises(ValueError, match="unknown pipeline params: run_root"):
        PipelineConfig.from_params({"run_root": "/elsewhere"})


# Params whose real bound also depends on another field (checked by the config's rules that span fields).
SPANNING_RULES = {"history_days": "holdout_days", "neumf_dim": "neumf_mlp_layers"}


def test_param_defaults_types_and_bounds_are_the_configs():
    config = PipelineConfig()
    for key, spec in param_specs().items():
        assert spec.default == config.to_params()[key], key
        python_type = {"integer": int, "number": float, "boolean": bool, "string": str}[spec.type]
        assert type(spec.default) is python_type, key
        assert spec.description, key
        # One step past each bound is refused with the param's name; the bound itself is accepted.
        model = next((m for m in MODEL_NAMES if key.startswith(f"{m}_")), None)
        label = f"{model}.{key[len(model) + 1:]}" if model else key
        for bound, step in ((spec.minimum, -1), (spec.maximum, 1)):
            if bound is None or key in SPANNING_RULES:
                continue
            PipelineConfig.from_params({key: type(spec.default)(bound)})
            with pytest.raises(ValueError, match=label):
                PipelineConfig.from_params({key: bound + step})
        if spec.enum:
            with pytest.raises(ValueError, match=label):
                PipelineConfig.from_params({key: "not-a-choice"})


def test_a_zero_swap_lock_timeout_means_no_timeout_and_is_kept():
    assert PipelineConfig.from_params({"swap_lock_timeout_ms": 0}).swap_lock_timeout_ms == 0
    assert "0: no timeout" in param_specs()["swap_lock_timeout_ms"].description


def test_cli_params_are_the_dag_params():
    from rec_models.__main__ import config_from_params, params_table

    for key, spec in param_specs().items():
        value = str(spec.default).lower() if isinstance(spec.default, bool) else str(spec.default)
        assert config_from_params([f"{key}={value}"]).to_params()[key] == spec.default, key
        assert f"| `{key}` |" in params_table()
    with pytest.raises(ValueError, match="KEY=VALUE"):
        config_from_params(["top_n"])


def test_readme_params_table_is_generated_from_the_config():
    from rec_models.__main__ import params_table
    from tests.conftest import ROOT

    assert params_table() in (ROOT / "README.md").read_text(), "run `python -m rec_models params` into the README"


def test_the_demo_and_seed_commands_carry_every_seeding_option():
    """`make demo` seeds through the same function as seed-demo: both parse to the same options."""
    from rec_models.__main__ import build_parser

    parser = build_parser()
    demo, seed, days = (vars(parser.parse_args(a)) for a in (["demo"], ["seed-demo"], ["seed-demo", "--days", "2"]))
    assert demo["days"] is None and seed["days"] is None and days["days"] == 2
    assert set(demo) - {"func"} == set(seed) - {"func"}
