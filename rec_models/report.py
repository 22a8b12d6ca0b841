"""Human-readable reports from the output tables: the run summary task and the demo's printout."""

from __future__ import annotations


import psycopg


def run_summary(conn: psycopg.Connection, run_key: str) -> dict:
    """What one nightly run did: per model its status and metrics, what serves now, rows rejected."""
    models = conn.execute(
        "SELECT model_run_id, model_name, status, status_reason, metrics, timings, n_users, n_videos, n_train_rows, "
        "train_mode, parent_model_run_id FROM rec.model_runs WHERE run_key = %s ORDER BY model_name",
        (run_key,)).fetchall()
    serving = dict(conn.execute("SELECT output_name, model_run_id FROM rec.serving").fetchall())
    rejected = dict(conn.execute(
        "SELECT source_table, count(*) FROM rec.rejected_rows WHERE run_key = %s GROUP BY source_table",
        (run_key,)).fetchall())
    return {
        "run_key": run_key,
        "night_check": night_check(conn, run_key),
        "next_day": next_day_summary(conn, run_key),
        "models": [
            {"model_run_id": r[0], "model": r[1], "status": r[2], "reason": r[3],
             "ndcg@10": r[4].get("ndcg@10"), "recall@10": r[4].get("recall@10"),
             "popularity_ndcg@10": (r[4].get("baseline_popularity") or {}).get("ndcg@10"),
             "users": r[6], "videos": r[7], "train_rows": r[8], "timings": r[5], "train_mode": r[9],
             "parent_model_run_id": r[10]}
            for r in models
        ],
        "serving": serving,
        "rows_current": current_row_counts(conn),
        "rejected_rows": rejected,
    }


def night_check(conn: psycopg.Connection, run_key: str) -> dict | None:
    """What the data check before training found for this night (None: not checked)."""
    row = conn.execute("SELECT views_in_interval, median_daily_views, trained, reason FROM rec.night_checks "
                       "WHERE run_key = %s", (run_key,)).fetchone()
    return dict(zip(("views_in_interval", "median_daily_views", "trained", "reason"), row)) if row else None


def next_day_summary(conn: psycopg.Connection, run_key: str) -> list[dict]:
    """Per model run measured this night: next-day NDCG@10, HR@10 and users over every listed user, its
    popular list's NDCG@10 on the same users, and its new videos (listed / viewed)."""
    rows = conn.execute(
        "SELECT m.model_run_id, m.model_name, n.ranker, n.segment, n.metric, n.value FROM rec.next_day_metrics n "
        "JOIN rec.model_runs m USING (model_run_id) WHERE n.run_key = %s AND n.segment IN ('all', 'new_videos') "
        "ORDER BY m.model_name", (run_key,)).fetchall()
    out: dict[int, dict] = {}
    for run_id, model, ranker, segment, metric, value in rows:
        entry = out.setdefault(run_id, {"model_run_id": run_id, "model": model})
        key = metric if segment == "all" or metric == "new_videos" else f"new_videos_{metric}"
        entry[key if ranker == "model" else f"popularity_{metric}"] = value
    return list(out.values())


def current_row_counts(conn: psycopg.Connection) -> dict[str, int]:
    return {
        view: conn.execute(f"SELECT count(*) FROM rec.{view}").fetchone()[0]  # fixed names, no input
        for view in ("similar_videos_current", "user_recommendations_current", "popular_videos_current")
    }


def demo_report(conn: psycopg.Connection, samples: int = 3, top: int = 5) -> str:
    """The printout of `make demo`: output sizes, holdout metrics, sample similar videos and users."""
    lines = ["", "=== Nightly recommendations: what the published run contains ==="]
    serving = conn.execute(
        "SELECT s.output_name, m.model_run_id, m.model_name, m.run_key, m.metrics FROM rec.serving s "
        "JOIN rec.model_runs m USING (model_run_id) ORDER BY s.output_name").fetchall()
    if not serving:
        return "No run has been published yet."
    for output, run_id, model, run_key, _ in serving:
        lines.append(f"{output:<22} model run {run_id} ({model}, data up to {run_key})")
    lines.append("")
    for view, count in current_row_counts(conn).items():
        lines.append(f"rows in rec.{view:<30} {count:>10,}")
    run_key = serving[0][3]
    lines += ["", f"holdout ({serving[0][4].get('protocol', '')}), models trained for {run_key}:",
              f"  {'model':<10} {'status':<10} {'NDCG@10':>8} {'Recall@10':>10} {'HR@10':>7} {'train s':>8}  note"]
    for name, status, reason, metrics, timings in conn.execute(
            "SELECT model_name, status, status_reason, metrics, timings FROM rec.model_runs WHERE run_key = %s "
            "ORDER BY model_name", (run_key,)).fetchall():
        note = "serving" if name == serving[0][2] else (reason or "")
        if "domains_only" in metrics:
            note += f"; its domain tower: Recall@10 {metrics['domains_only']['recall@10']:.4f}"
        if "warm" in metrics:
            others = ", ".join(f"{name} {ndcg:.4f}" for name, ndcg in metrics["warm"].get("candidates", {}).items()
                               if name != metrics["warm"]["model"])
            note += (f"; domain-only users served by {metrics['warm']['model']} (NDCG@10 "
                     f"{metrics['warm']['ndcg@10']:.4f}; {others})")
        lines.append(f"  {name:<10} {status:<10} {metrics.get('ndcg@10', float('nan')):>8.4f} "
                     f"{metrics.get('recall@10', float('nan')):>10.4f} {metrics.get('hr@10', float('nan')):>7.4f} "
                     f"{timings.get('train_seconds', float('nan')):>8.1f}  {note}")
    base = serving[0][4].get("baseline_popularity", {})
    lines.append(f"  {'popularity':<10} {'baseline':<10} {base.get('ndcg@10', float('nan')):>8.4f} "
                 f"{base.get('recall@10', float('nan')):>10.4f} {base.get('hr@10', float('nan')):>7.4f}")
    measured = next_day_summary(conn, run_key)
    if measured:
        lines += ["", f"next day (the lists that served before {run_key} against its new views, top 10):",
                  f"  {'model':<10} {'run':>6} {'users':>7} {'NDCG@10':>8} {'popular':>8} {'HR@10':>7}  new videos listed/viewed"]
        for m in measured:
            lines.append(f"  {m['model']:<10} {m['model_run_id']:>6} {m.get('users', 0):>7.0f} "
                         f"{m.get('ndcg@10', float('nan')):>8.4f} {m.get('popularity_ndcg@10', float('nan')):>8.4f} "
                         f"{m.get('hr@10', float('nan')):>7.4f}  {m.get('new_videos_listed', 0):.0f}/"
                         f"{m.get('new_videos_viewed', 0):.0f} of {m.get('new_videos', 0):.0f}")
    videos = conn.execute(
        "SELECT video_id FROM (SELECT DISTINCT video_id FROM rec.similar_videos_current) v "
        "ORDER BY hashint8(video_id) LIMIT %s", (samples,)).fetchall()
    lines += ["", f"Top-{top} similar videos for {samples} sample videos:"]
    for (video_id,) in videos:
        title, tags = conn.execute("SELECT title, tags FROM videos WHERE video_id = %s", (video_id,)).fetchone()
        lines.append(f"  [{video_id}] {title}  (tags: {', '.join(tags or [])})")
        for rank, sim_id, sim_title, score in conn.execute(
            "SELECT s.rank, s.similar_video_id, v.title, s.score FROM rec.similar_videos_current s "
            "JOIN videos v ON v.video_id = s.similar_video_id WHERE s.video_id = %s AND s.rank <= %s ORDER BY s.rank",
            (video_id, top)).fetchall():
            lines.append(f"      {rank}. [{sim_id}] {sim_title:<40} score {score:.3f}")
    lines += ["", f"Top domains and top-{top} videos for sample users:"]
    users = conn.execute(
        "SELECT DISTINCT ON (segment) user_id, segment FROM rec.user_recommendations_current "
        "ORDER BY segment, hashint8(user_id)").fetchall()
    for user_id, segment in users[:samples]:
        domains = conn.execute(
            "SELECT domain, sum(visits) FROM user_domain_visits WHERE user_id = %s GROUP BY domain "
            "ORDER BY sum(visits) DESC, domain LIMIT 3", (user_id,)).fetchall()
        lines.append(f"  user {user_id} ({segment}); top domains: " + ", ".join(f"{d} ({n})" for d, n in domains))
        for rank, video_id, title, score in conn.execute(
            "SELECT r.rank, r.video_id, v.title, r.score FROM rec.user_recommendations_current r "
            "JOIN videos v USING (video_id) WHERE r.user_id = %s AND r.rank <= %s ORDER BY r.rank",
            (user_id, top)).fetchall():
            lines.append(f"      {rank}. [{video_id}] {title:<40} score {score:.3f}")
    return "\n".join(lines)