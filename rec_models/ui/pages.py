"""HTML for each page: plain server-rendered markup, every value escaped, a chart as inline SVG."""

from __future__ import annotations

from html import escape

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1b1f24;background:#f6f8fa}
header{background:#017cee;color:#fff;padding:10px 20px;display:flex;gap:18px;align-items:center}
header a{color:#fff;text-decoration:none;font-weight:500} header b{font-size:18px;margin-right:12px}
main{padding:16px 20px;max-width:1200px} h2{margin:18px 0 8px;font-size:18px}
table{border-collapse:collapse;background:#fff;width:100%;font-size:13px}
th,td{border-bottom:1px solid #e1e4e8;padding:6px 8px;text-align:left;vertical-align:top} th{background:#f0f3f6}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:10px}
.card{background:#fff;border:1px solid #e1e4e8;border-radius:8px;padding:10px}
.card .rank{color:#57606a;font-size:12px} .card .title{font-weight:600;margin:4px 0}
.card .tags{color:#57606a;font-size:12px} .card .score{margin-top:6px;font-variant-numeric:tabular-nums}
.bar{height:6px;background:#017cee;border-radius:3px}
.pill{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;background:#e1e4e8}
.published{background:#d2f4d3}.rejected{background:#ffd8d3}.candidate{background:#fff1c2}.serving{background:#017cee;color:#fff}
form{margin:8px 0} input{padding:6px;font-size:14px;width:280px} button{padding:6px 12px}
.kpis{display:flex;gap:12px;flex-wrap:wrap}.kpi{background:#fff;border:1px solid #e1e4e8;border-radius:8px;padding:10px 14px;min-width:170px}
.kpi .v{font-size:22px;font-weight:600}.muted{color:#57606a}
"""
COLORS = ["#017cee", "#e8590c", "#2f9e44", "#9c36b5", "#c2255c"]


def page(title: str, body: str, base: str) -> str:
    nav = "".join(f'<a href="{base}/{path}">{label}</a>' for path, label in
                  (("", "Model runs"), ("videos", "Similar videos"), ("users", "Users"), ("health", "Health")))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)} · Recommendations</title>"
            f"<style>{STYLE}</style></head><body><header><b>Recommendations</b>{nav}</header>"
            f"<main><h1 style='font-size:20px'>{escape(title)}</h1>{body}</main></body></html>")


def fmt(value, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else escape(str(value))


def runs_table(runs: list[dict]) -> str:
    head = ("<tr><th>run</th><th>model</th><th>data up to</th><th>status</th><th>users</th><th>videos</th>"
            "<th>train rows</th><th>NDCG@10</th><th>Recall@10</th><th>train s</th><th>why</th></tr>")
    rows = []
    for r in runs:
        status = f"<span class='pill {escape(r['status'])}'>{escape(r['status'])}</span>"
        if r["serving"]:
            status += " <span class='pill serving'>serving now</span>"
        m, t = r["metrics"] or {}, r["timings"] or {}
        rows.append(f"<tr><td>{r['id']}</td><td>{escape(r['model'])}</td><td>{escape(str(r['end']))}</td><td>{status}</td>"
                    f"<td>{fmt(r['users'])}</td><td>{fmt(r['videos'])}</td><td>{fmt(r['train_rows'])}</td>"
                    f"<td>{fmt(m.get('ndcg@10'))}</td><td>{fmt(m.get('recall@10'))}</td>"
                    f"<td>{fmt(t.get('train_seconds'), 1)}</td><td class='muted'>{escape(r['reason'] or '')}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def metric_chart(runs: list[dict], metric: str, width: int = 560, height: int = 200) -> str:
    """One line per model: the holdout metric over the data interval ends."""
    series: dict[str, list[tuple]] = {}
    for r in sorted(runs, key=lambda r: r["end"]):
        value = (r["metrics"] or {}).get(metric)
        if isinstance(value, (int, float)):
            series.setdefault(r["model"], []).append((r["end"], float(value)))
    if not series:
        return "<p class='muted'>No runs yet.</p>"
    ends = sorted({e for points in series.values() for e, _ in points})
    top = max(v for points in series.values() for _, v in points) * 1.15 or 1.0
    x = {e: 40 + (width - 60) * (i / max(1, len(ends) - 1)) for i, e in enumerate(ends)}
    y = lambda v: height - 25 - (height - 45) * v / top  # noqa: E731
    parts = [f"<svg width='{width}' height='{height}' role='img' aria-label='{escape(metric)} per model'>",
             f"<rect x='0' y='0' width='{width}' height='{height}' fill='#fff' stroke='#e1e4e8'/>",
             f"<text x='8' y='16' font-size='12' fill='#57606a'>{escape(metric)} (holdout)</text>",
             f"<text x='4' y='{y(top / 1.15) + 4:.0f}' font-size='10' fill='#57606a'>{top / 1.15:.3f}</text>"]
    for i, (model, points) in enumerate(sorted(series.items())):
        color = COLORS[i % len(COLORS)]
        coords = " ".join(f"{x[e]:.1f},{y(v):.1f}" for e, v in points)
        parts.append(f"<polyline fill='none' stroke='{color}' stroke-width='2' points='{coords}'/>")
        parts += [f"<circle cx='{x[e]:.1f}' cy='{y(v):.1f}' r='3' fill='{color}'><title>{escape(model)} "
                  f"{escape(str(e))}: {v:.4f}</title></circle>" for e, v in points]
        parts.append(f"<text x='{width - 150}' y='{18 + 14 * i}' font-size='12' fill='{color}'>■ {escape(model)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def video_cards(items: list[tuple], base: str, link: str = "videos") -> str:
    if not items:
        return "<p class='muted'>No results in the published run.</p>"
    top = max(float(r[4]) for r in items) or 1.0
    cards = []
    for rank, video_id, title, tags, score, *rest in items:
        width = max(2, 100 * float(score) / top) if top > 0 else 2
        extra = f" · {escape(rest[0])}" if rest and isinstance(rest[0], str) else ""
        cards.append(f"<div class='card'><div class='rank'>#{rank}{extra}</div>"
                     f"<div class='title'><a href='{base}/{link}/{video_id}'>{escape(title)}</a></div>"
                     f"<div class='tags'>{escape(', '.join(tags or []))} · id {video_id}</div>"
                     f"<div class='score'>score {float(score):.3f}</div><div class='bar' style='width:{width:.0f}%'></div></div>")
    return f"<div class='cards'>{''.join(cards)}</div>"


def kpis(pairs: list[tuple[str, str, str]]) -> str:
    return "<div class='kpis'>" + "".join(
        f"<div class='kpi'><div class='muted'>{escape(label)}</div><div class='v'>{value}</div>"
        f"<div class='muted'>{escape(note)}</div></div>" for label, value, note in pairs) + "</div>"
