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


def audit_query(output: OutputTable, staging: sql.Identifier) -> tuple[sql.Composed, tuple[str, ...]]:
    """One query that reads the staged rows once, in list order, and returns the list count, the row
    count and then a count of violations per named rule (0 = pass): the rules one by one read 20M rows
    seven times at a million users. Ranks are unique within a list (the staging key), so a list's
    ranks run from 1 without a gap exactly when its lowest is 1 and its highest its length."""
    # A global list (no group key) is one group: every row has the same model_run_id.
    group = sql.Identifier(output.group_key or "model_run_id")
    item = sql.Identifier(output.item_column)
    per_row = {  # counted per list, then summed
        "non-finite score": sql.SQL("score = 'NaN'::real OR score IN ('Infinity', '-Infinity')"),
        "scores increase with rank": sql.SQL("score > previous_score"),
        "wrong model run": sql.SQL("model_run_id <> %(model_run_id)s"),
    }
    if output is SIMILAR_VIDEOS:
        per_row["video is its own neighbour"] = sql.SQL("video_id = similar_video_id")
    per_list = {
        "ranks not contiguous from 1": sql.SQL("lowest_rank <> 1 OR highest_rank <> length"),
        "item repeated in a list": sql.SQL("items <> length"),
    }
    rules = tuple(per_row) + tuple(per_list)
    query = sql.SQL(
        "SELECT count(*), coalesce(sum(length), 0)::bigint, {totals} FROM ("
        "SELECT {g}, min(rank) AS lowest_rank, max(rank) AS highest_rank, count(*) AS length, "
        "count(DISTINCT {i}) AS items, {counts} FROM ("
        "SELECT *, lag(score) OVER (PARTITION BY {g} ORDER BY rank) AS previous_score FROM {t}) ranked "
        "GROUP BY {g}) lists").format(
        g=group, i=item, t=staging,
        counts=sql.SQL(", ").join(sql.SQL("count(*) FILTER (WHERE {}) AS {}").format(rule, sql.Identifier(f"rule{k}"))
                                  for k, rule in enumerate(per_row.values())),
        totals=sql.SQL(", ").join(
            [sql.SQL("coalesce(sum({}), 0)::bigint").format(sql.Identifier(f"rule{k}")) for k in range(len(per_row))]
            + [sql.SQL("count(*) FILTER (WHERE {})").format(rule) for rule in per_list.values()]))
    return query, rules


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
