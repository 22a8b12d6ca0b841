"""HTML for each page: plain server-rendered markup, every value escaped, a chart as inline SVG."""

from __future__ import annotations

import math
from html import escape

from rec_models.names import MF, NEUMF, POPULARITY, TWO_TOWER

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
.warning{background:#fff1c2;border:1px solid #d4a72c;border-radius:6px;padding:8px 12px}
"""
COLORS = ["#017cee", "#e8590c", "#2f9e44", "#9c36b5", "#c2255c"]
# A model keeps its colour in every chart (the holdout and the next-day charts list different series).
MODEL_COLORS = {MF: COLORS[0], TWO_TOWER: COLORS[1], NEUMF: COLORS[3], POPULARITY: "#8c959f"}


def page(title: str, body: str, base: str, warning: str | None = None) -> str:
    """A whole page; ``warning`` (escaped) stands above the title on every page while it applies."""
    nav = "".join(f'<a href="{base}/{path}">{label}</a>' for path, label in
                  (("", "Model runs"), ("videos", "Similar videos"), ("users", "Users"), ("health", "Health")))
    banner = f"<p class='warning' role='alert'>{escape(warning)}</p>" if warning else ""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)} · Recommendations</title>"
            f"<style>{STYLE}</style></head><body><header><b>Recommendations</b>{nav}</header>"
            f"<main>{banner}<h1 style='font-size:20px'>{escape(title)}</h1>{body}</main></body></html>")


def fmt(value, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else escape(str(value))


def runs_table(runs: list[dict]) -> str:
    head = ("<tr><th>run</th><th>model</th><th>data up to</th><th>status</th><th>trained</th><th>users</th><th>videos</th>"
            "<th>train rows</th><th>NDCG@10</th><th>Recall@10</th><th>domain-only NDCG@10</th><th>train s</th>"
            "<th>why</th></tr>")
    rows = []
    for r in runs:
        status = f"<span class='pill {escape(r['status'])}'>{escape(r['status'])}</span>"
        if r["serving"]:
            status += " <span class='pill serving'>serving now</span>"
        m, t = r["metrics"] or {}, r["timings"] or {}
        warm = m.get("warm") or {}  # who served this run's domain-only users, and their figure
        warm_cell = f"{fmt(warm.get('ndcg@10'))} <span class='muted'>{escape(warm.get('model', ''))}</span>" if warm else "—"
        rows.append(f"<tr><td>{r['id']}</td><td>{escape(r['model'])}</td><td>{escape(str(r['end']))}</td><td>{status}</td>"
                    f"<td>{escape(r.get('train_mode') or '')}</td>"
                    f"<td>{fmt(r['users'])}</td><td>{fmt(r['videos'])}</td><td>{fmt(r['train_rows'])}</td>"
                    f"<td>{fmt(m.get('ndcg@10'))}</td><td>{fmt(m.get('recall@10'))}</td><td>{warm_cell}</td>"
                    f"<td>{fmt(t.get('train_seconds'), 1)}</td><td class='muted'>{escape(r['reason'] or '')}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def metric_chart(runs: list[dict], metric: str, label: str = "holdout", width: int = 620, height: int = 240) -> str:
    """One line per model: ``metric`` over the data interval ends, with dated x ticks, value y ticks
    from 0, each point's exact value on hover, and a ring around the run that serves now."""
    series: dict[str, list[tuple]] = {}
    for r in sorted(runs, key=lambda r: r["end"]):
        value = (r["metrics"] or {}).get(metric)
        if isinstance(value, (int, float)) and value == value:
            series.setdefault(r["model"], []).append((r["end"], float(value), bool(r.get("serving"))))
    if not series:
        return f"<p class='muted'>No {escape(label)} {escape(metric)} yet.</p>"
    left, right, top_pad, bottom = 52, 130, 28, 42  # plot margins: y labels, legend, title, x labels
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    ends = sorted({e for points in series.values() for e, _, _ in points})
    y_max = _nice_ceiling(max(v for points in series.values() for _, v, _ in points))
    x = {e: left + plot_w * (i / max(1, len(ends) - 1)) if len(ends) > 1 else left + plot_w / 2
         for i, e in enumerate(ends)}
    y = lambda v: top_pad + plot_h * (1 - v / y_max)  # noqa: E731  (the scale starts at 0)
    parts = [f"<svg width='{width}' height='{height}' role='img' aria-label='{escape(label)} {escape(metric)} per model'>",
             f"<rect x='0' y='0' width='{width}' height='{height}' fill='#fff' stroke='#e1e4e8'/>",
             f"<text x='8' y='17' font-size='12' fill='#57606a'>{escape(metric)} ({escape(label)})</text>"]
    for v in _ticks(y_max):
        parts += [f"<line x1='{left}' x2='{left + plot_w}' y1='{y(v):.1f}' y2='{y(v):.1f}' stroke='#eef1f4'/>",
                  f"<text x='{left - 6}' y='{y(v) + 4:.1f}' font-size='10' fill='#57606a' text-anchor='end'>{v:g}</text>"]
    step = max(1, -(-len(ends) // 6))  # at most ~6 dated x ticks
    for e in ends[::step]:
        parts += [f"<line x1='{x[e]:.1f}' x2='{x[e]:.1f}' y1='{top_pad + plot_h}' y2='{top_pad + plot_h + 4}' stroke='#57606a'/>",
                  f"<text x='{x[e]:.1f}' y='{top_pad + plot_h + 16}' font-size='10' fill='#57606a' "
                  f"text-anchor='middle'>{escape(_day(e))}</text>"]
    parts += [f"<line x1='{left}' x2='{left}' y1='{top_pad}' y2='{top_pad + plot_h}' stroke='#57606a'/>",
              f"<line x1='{left}' x2='{left + plot_w}' y1='{top_pad + plot_h}' y2='{top_pad + plot_h}' stroke='#57606a'/>",
              f"<text x='{left + plot_w / 2:.0f}' y='{height - 6}' font-size='10' fill='#57606a' "
              f"text-anchor='middle'>data interval end (UTC)</text>"]
    for i, (model, points) in enumerate(sorted(series.items())):
        color = MODEL_COLORS.get(model, COLORS[i % len(COLORS)])
        coords = " ".join(f"{x[e]:.1f},{y(v):.1f}" for e, v, _ in points)
        parts.append(f"<polyline fill='none' stroke='{color}' stroke-width='2' points='{coords}'/>")
        for e, v, serving in points:
            ring = (f"<circle cx='{x[e]:.1f}' cy='{y(v):.1f}' r='7' fill='none' stroke='#1b1f24' stroke-width='2'/>"
                    if serving else "")
            parts.append(f"{ring}<circle cx='{x[e]:.1f}' cy='{y(v):.1f}' r='4' fill='{color}'><title>{escape(model)}, "
                         f"data up to {escape(str(e))}: {escape(metric)} {v:.4f}{' (serving now)' if serving else ''}"
                         f"</title></circle>")
        parts.append(f"<text x='{left + plot_w + 12}' y='{top_pad + 10 + 16 * i}' font-size='12' fill='{color}'>"
                     f"■ {escape(model)}</text>")
    n = len(series)
    if any(serving for points in series.values() for _, _, serving in points):  # a legend only for a ring drawn
        parts.append(f"<circle cx='{left + plot_w + 17}' cy='{top_pad + 6 + 16 * n}' r='5' fill='none' stroke='#1b1f24' "
                     f"stroke-width='2'/><text x='{left + plot_w + 27}' y='{top_pad + 10 + 16 * n}' font-size='12' "
                     f"fill='#1b1f24'>serving now</text>")
    parts.append("</svg>")
    return "".join(parts)


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten at or above ``value`` (a readable axis top)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= value)


def _ticks(top: float) -> list[float]:
    """0 to ``top`` in 4 to 6 round steps (1, 2, 2.5 or 5 times a power of ten)."""
    power = 10 ** math.floor(math.log10(top / 5))
    step = next(m * power for m in (1, 2, 2.5, 5, 10, 20) if top / (m * power) <= 6)
    return [round(i * step, 12) for i in range(int(round(top / step)) + 1)]


def _day(moment) -> str:
    return moment.strftime("%Y-%m-%d") if hasattr(moment, "strftime") else str(moment)[:10]


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


def _bytes(value) -> str:
    return "—" if value is None else f"{value / 1e9:,.2f} GB" if abs(value) >= 1e8 else f"{value / 1e6:,.1f} MB"


def disk_table(nights: list[dict]) -> str:
    """Each night's expected bytes (the pre-flight check before training) next to what it took."""
    if not nights:
        return "<p class='muted'>No night has been checked yet.</p>"
    head = ("<tr><th>data up to</th><th>run folder expected</th><th>run folder</th><th>run root free</th>"
            "<th>publishes expected</th><th>database before</th><th>database after</th><th>database disk free</th></tr>")
    rows = "".join(
        f"<tr><td>{escape(str(n['end']))}{'' if n['trained'] else ' <span class=muted>(not trained)</span>'}</td>"
        f"<td>{_bytes(n['expected_run_folder'])}</td><td>{_bytes(n['run_folder'])}</td><td>{_bytes(n['run_root_free'])}</td>"
        f"<td>{_bytes(n['expected_database'])}</td><td>{_bytes(n['database_before'])}</td>"
        f"<td>{_bytes(n['database'])}</td><td>{_bytes(n['database_free'])}</td></tr>" for n in nights)
    return f"<table>{head}{rows}</table>"
