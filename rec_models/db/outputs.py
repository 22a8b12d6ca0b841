"""The output tables' column contracts and the audits every staged result must pass before publish."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from rec_models import names


@dataclass(frozen=True)
class OutputTable:
    name: str  # table in schema rec, partitioned by model_run_id
    columns: tuple[str, ...]  # in COPY order, model_run_id first
    pg_types: tuple[str, ...]
    primary_key: tuple[str, ...]
    group_key: str | None  # rows are ranked within this column's groups (None: one global list)
    item_column: str


SIMILAR_VIDEOS = OutputTable(
    names.SIMILAR_VIDEOS,
    ("model_run_id", "video_id", "rank", "similar_video_id", "score"),
    ("int8", "int8", "int2", "int8", "float4"),
    ("model_run_id", "video_id", "rank"),
    "video_id",
    "similar_video_id",
)
USER_RECOMMENDATIONS = OutputTable(
    names.USER_RECOMMENDATIONS,
    ("model_run_id", "user_id", "rank", "video_id", "score", "segment"),
    ("int8", "int8", "int2", "int8", "float4", "text"),
    ("model_run_id", "user_id", "rank"),
    "user_id",
    "video_id",
)
POPULAR_VIDEOS = OutputTable(
    names.POPULAR_VIDEOS,
    ("model_run_id", "rank", "video_id", "score"),
    ("int8", "int2", "int8", "float4"),
    ("model_run_id", "rank"),
    None,
    "video_id",
)
OUTPUT_TABLES = (SIMILAR_VIDEOS, USER_RECOMMENDATIONS, POPULAR_VIDEOS)
OUTPUTS = {t.name: t for t in OUTPUT_TABLES}
if tuple(OUTPUTS) != names.OUTPUT_TABLE_NAMES:
    raise ImportError(f"output contracts {tuple(OUTPUTS)} do not match the output tables {names.OUTPUT_TABLE_NAMES}")


def audit_queries(output: OutputTable, staging: sql.Identifier) -> dict[str, sql.Composed]:
    """Named queries that each return a count of violations (0 = pass)."""
    # A global list (no group key) is one group: every row has the same model_run_id.
    group = sql.Identifier(output.group_key or "model_run_id")
    item = sql.Identifier(output.item_column)
    checks = {
        "non-finite score": sql.SQL("SELECT count(*) FROM {t} WHERE score = 'NaN'::real OR score IN ('Infinity', '-Infinity')"),
        "ranks not contiguous from 1": sql.SQL(
            "SELECT count(*) FROM (SELECT {g}, min(rank) AS lo, max(rank) AS hi, count(*) AS n FROM {t} GROUP BY {g}) s "
            "WHERE lo <> 1 OR hi <> n"),
        "scores increase with rank": sql.SQL(
            "SELECT count(*) FROM (SELECT score, lag(score) OVER (PARTITION BY {g} ORDER BY rank) AS prev FROM {t}) s "
            "WHERE score > prev"),
        "item repeated in a list": sql.SQL(
            "SELECT count(*) FROM (SELECT {g}, {i} FROM {t} GROUP BY {g}, {i} HAVING count(*) > 1) s"),
        "wrong model run": sql.SQL("SELECT count(*) FROM {t} WHERE model_run_id <> %(model_run_id)s"),
    }
    if output is SIMILAR_VIDEOS:
        checks["video is its own neighbour"] = sql.SQL("SELECT count(*) FROM {t} WHERE video_id = similar_video_id")
    return {name: q.format(t=staging, g=group, i=item) for name, q in checks.items()}


def run_digest(conn, model_run_id: int) -> dict[str, tuple[int, str | None]]:
    """Each output table's (row count, md5 of the run's rows in key order): what tells two runs'
    results apart without reading them. Scores to 4 decimals: the order threads sum in moves the
    last bits of a float4 from machine to machine."""
    digest = {}
    for table in OUTPUT_TABLES:
        columns = [c for c in table.columns if c not in ("model_run_id", "score")]
        order = [c for c in table.primary_key if c != "model_run_id"]
        row = sql.SQL("concat_ws(',', {}, round(score::numeric, 4))").format(sql.SQL(", ").join(map(sql.Identifier, columns)))
        digest[table.name] = tuple(conn.execute(sql.SQL(
            "SELECT count(*), md5(string_agg({}, ';' ORDER BY {})) FROM {} WHERE model_run_id = %s").format(
            row, sql.SQL(", ").join(map(sql.Identifier, order)), sql.Identifier("rec", table.name)),
            (model_run_id,)).fetchone())
    return digest


def night_digests(conn, interval_end) -> dict[str, list]:
    """model -> [train mode, parent run, run_digest] of each run published for the night ending at
    ``interval_end``: what a rerun of the night must reproduce."""
    return {model: [train_mode, parent, run_digest(conn, model_run_id)]
            for model, model_run_id, train_mode, parent in conn.execute(
                "SELECT model_name, model_run_id, train_mode, parent_model_run_id FROM rec.model_runs "
                "WHERE data_interval_end = %s AND published_at IS NOT NULL", (interval_end,)).fetchall()}
