"""Every name the pipeline shares with the outside world, spelled once: model names, output tables,
their Asset URIs and the Airflow Connection ids. Standard library only, so DAG files and the UI
plugin import it at parse time."""

from __future__ import annotations

# Models trained each night, in the order the DAG wires them.
MF = "mf"
NEUMF = "neumf"
TWO_TOWER = "two_tower"
MODEL_NAMES = (MF, NEUMF, TWO_TOWER)
# Those that score by a dot product of user and video vectors: serving_model "auto" chooses among them.
DOT_PRODUCT_MODELS = (MF, TWO_TOWER)
# NCF's stand-alone parts (pretraining, benchmarks); never published by the nightly DAG.
GMF = "gmf"
MLP = "mlp"
# Fallback models: cold and unknown users, and warm users when the two-tower did not pass its gate.
POPULARITY = "popularity"
FEATURE_POPULARITY = "feature_popularity"
# Reduced-rank ridge regression from domains to videos: serves users known only by their domains.
DOMAIN_RIDGE = "domain_ridge"
# The train task (and run folder part) that fits both fallback models.
FALLBACKS = "fallbacks"

# Output tables in schema rec, each with a `<name>_current` view of the run that serves.
SIMILAR_VIDEOS = "similar_videos"
USER_RECOMMENDATIONS = "user_recommendations"
POPULAR_VIDEOS = "popular_videos"
OUTPUT_TABLE_NAMES = (SIMILAR_VIDEOS, USER_RECOMMENDATIONS, POPULAR_VIDEOS)

# Airflow Connections: the DAGs read and write the recommendations database through the first; the
# Recommendations view reads through the second (a login in the read-only role rec_ui); the third
# holds the credentials of an object-store run root (RECS_RUN_ROOT=s3://...; optional).
RECS_CONN_ID = "recs_db"
UI_CONN_ID = "recs_db_ui"
RUN_STORE_CONN_ID = "recs_run_store"


def asset_name(table: str) -> str:
    """The Airflow Asset name of an output table, as downstream DAGs schedule on it."""
    return f"rec.{table}"


def asset_uri(table: str, schema: str = "rec") -> str:
    """A table of the recommendations database as an Asset URI (host: the Connection that reaches it);
    OpenLineage names it ``recs.<schema>.<table>`` in namespace ``postgres://recs_db:5432``."""
    return f"postgres://{RECS_CONN_ID}:5432/recs/{schema}/{table}"


# Lineage: what the nightly tasks read and write besides the output tables (OpenLineage datasets).
VIDEOS, VIDEO_VIEWS, USER_DOMAIN_VISITS = "videos", "video_views", "user_domain_visits"
SOURCE_TABLE_NAMES = (VIDEOS, VIDEO_VIEWS, USER_DOMAIN_VISITS)  # upstream's, schema public
REJECTED_ROWS = "rejected_rows"


def judged_table(source_table: str) -> str:
    """The table (schema rec) of one source's kept verdicts: its rows, normalised, and their reasons."""
    return f"judged_{source_table}"


MODEL_RUNS = "model_runs"
NEXT_DAY_METRICS = "next_day_metrics"
NIGHT_CHECKS = "night_checks"

# Environment variables read across processes: a Celery worker's own name (several workers on one
# machine share its hostname), and the folder through which a bench pauses a task at a fault point.
WORKER_NAME_ENV = "RECS_WORKER_NAME"
PAUSE_DIR_ENV = "RECS_PAUSE_DIR"
