"""DagBag integrity: the DAG parses without import errors, is cheap to parse, and is configured as
operators expect (schedule, retries, tags, params)."""

import os
import subprocess
import sys
from datetime import timedelta

import pytest

from tests.conftest import ROOT



@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "nightly_recommendations" in dagbag.dags


def test_schedule_and_safety(dagbag):
    dag = dagbag.dags["nightly_recommendations"]
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert {"recommendations", "pytorch", "postgres"} <= set(dag.tags)
    assert dag.doc_md and "publish" in dag.doc_md
    assert dag.timetable.expression == "0 2 * * *" and str(dag.timetable.timezone) == "UTC"
    for task in dag.tasks:
        assert task.retries >= 2, task.task_id
        assert task.retry_exponential_backoff
        assert task.retry_delay >= timedelta(seconds=30)


def test_task_wiring(dagbag):
    dag = dagbag.dags["nightly_recommendations"]
    ids = {t.task_id for t in dag.tasks}
    models = ("mf", "neumf", "two_tower")
    per_model = {f"{step}_{m}" for step in ("train", "evaluate", "plan_scoring", "score_videos", "score_users", "publish") for m in models}
    assert ids == {"migrate", "erase_personal_data", "validate_sources", "next_day_metrics", "extract_snapshot",
                   "check_interval", "train_fallbacks", "choose_serving", "summary"} | per_model
    # Erasure requests are carried out before the night reads anything.
    assert dag.get_task("migrate").downstream_task_ids == {"erase_personal_data"}
    assert dag.get_task("erase_personal_data").downstream_task_ids == {"validate_sources"}
    assert dag.get_task("validate_sources").downstream_task_ids == {"extract_snapshot", "next_day_metrics"}
    # Nothing trains before the data check; the replay of yesterday's lists never holds serving back.
    assert dag.get_task("extract_snapshot").downstream_task_ids == {"check_interval"}
    assert dag.get_task("check_interval").downstream_task_ids == {"train_fallbacks"} | {f"train_{m}" for m in models}
    # A rejected model's user scoring maps over no shards (skipped): that must not skip what follows.
    for task_id in [f"publish_{m}" for m in models] + ["choose_serving", "summary"]:
        assert dag.get_task(task_id).trigger_rule == "none_failed", task_id
    assert dag.get_task("next_day_metrics").downstream_task_ids == {"summary"}
    for m in models:
        assert dag.get_task(f"evaluate_{m}").upstream_task_ids == {"train_fallbacks", f"train_{m}"}
        # Scoring reads its own evaluation and the dot-product models' (serving_model auto chooses among
        # them; the two-tower places new videos); publishing decides on every evaluation.
        known = {f"evaluate_{name}" for name in ("mf", "two_tower", m)}
        evaluations = {f"evaluate_{name}" for name in models}
        assert dag.get_task(f"plan_scoring_{m}").upstream_task_ids == known
        # The video pass and the user shards run side by side once the plan is made.
        assert dag.get_task(f"score_videos_{m}").upstream_task_ids == {f"plan_scoring_{m}"} | known
        assert dag.get_task(f"score_users_{m}").upstream_task_ids == {f"plan_scoring_{m}"} | known
        assert dag.get_task(f"publish_{m}").upstream_task_ids == {f"score_videos_{m}", f"score_users_{m}"} | evaluations
        assert [a.name for a in dag.get_task(f"publish_{m}").outlets] == [
            "rec.similar_videos", "rec.user_recommendations", "rec.popular_videos"]
    assert dag.get_task("choose_serving").upstream_task_ids >= {f"publish_{m}" for m in models}
    assert dag.get_task("summary").upstream_task_ids == {"choose_serving", "next_day_metrics"}


def test_params_are_the_configs_operator_settings(dagbag):
    """One definition: every DAG param's default, type, bounds and description are the config field's,
    and the DAG offers exactly the keys the CLI's --param accepts."""
    from rec_models.__main__ import config_from_params
    from rec_models.config import PipelineConfig, param_specs

    dag = dagbag.dags["nightly_recommendations"]
    specs = param_specs()
    assert set(dag.params) == set(specs)
    for key, spec in specs.items():
        param = dag.params.get_param(key)
        assert param.value == spec.default, key
        assert param.schema == spec.schema() and param.description == spec.description, key
    defaults = {k: dag.params[k] for k in dag.params}
    assert PipelineConfig.from_params(defaults) == PipelineConfig()
    assert config_from_params([f"{k}={v}" for k, v in defaults.items()]) == PipelineConfig()
    assert defaults["user_shards"] == 2  # the documented default, once drifted between DAG and config


def test_parsing_imports_no_heavy_modules():
    """Parsing runs often in the dag-processor: torch, numpy and the package's heavy modules load only
    when tasks run; parse time reads only the standard-library config and names, and the deadline
    callback's module (Airflow imports it to check the path)."""
    light = ('rec_models', 'rec_models.config', 'rec_models.names', 'rec_models.alerts', 'rec_models.alerts.deadline')
    code = (
        "import sys, runpy; runpy.run_path(sys.argv[1]);"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'scipy', 'psycopg')"
        f" or (m.startswith('rec_models') and m not in {light!r})];"
        "print(','.join(heavy))"
    )
    env = {**os.environ, "RECS_PUBLISH_DEADLINE_MINUTES": "300"}  # as deployed: with its deadline alert
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "dags" / "nightly_recommendations.py")],
                         capture_output=True, text=True, check=True, env=env)
    loaded = set(filter(None, out.stdout.strip().splitlines()[-1].split(","))) if out.stdout.strip() else set()
    assert not loaded & {"torch", "scipy"} and not {m for m in loaded if m.startswith("rec_models")}, loaded


def test_every_dag_has_tags_retries_and_docs(dagbag):
    assert set(dagbag.dags) == {"nightly_recommendations", "rollback_recommendations", "example_downstream_consumer",
                                "erase_personal_data"}
    for dag in dagbag.dags.values():
        assert dag.tags and dag.doc_md, dag.dag_id
        assert all(task.retries >= 2 for task in dag.tasks), dag.dag_id


def test_consumer_runs_on_fresh_recommendations(dagbag):
    consumer = dagbag.dags["example_downstream_consumer"]
    published = {a.uri for t in dagbag.dags["nightly_recommendations"].tasks for a in t.outlets}
    consumed = {a.uri for a in consumer.timetable.asset_condition.objects}
    assert "postgres://recs_db:5432/recs/rec/user_recommendations" in published
    assert consumed <= published and consumed


def test_erasure_dag_is_manual_files_then_erases(dagbag):
    dag = dagbag.dags["erase_personal_data"]
    assert dag.timetable.can_be_scheduled is False or dag.schedule is None
    assert dag.get_task("file_requests").downstream_task_ids == {"erase"}
    assert dag.params["users"] == [] and "alert_emails" in dag.params
    assert not [a for t in dag.tasks for a in t.outlets if a.name.startswith("rec.user_recommendations")]


def test_rollback_dag_is_manual_with_params(dagbag):
    dag = dagbag.dags["rollback_recommendations"]
    assert dag.timetable.can_be_scheduled is False or dag.schedule is None
    assert dag.params["to_run"] == 0 and dag.params["model"] == "two_tower"
