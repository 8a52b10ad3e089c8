"""Suite metrics (pass@1 mean and spread, unbiased pass@k, pass^k, claims coverage, cost, tokens, time) and
the reports: report.json, report.md and a self-contained report.html with inline SVG charts.
"""

from __future__ import annotations

import html
import json
import math
from collections import Counter
from collections.abc import Sequence
from math import comb
from pathlib import Path
from typing import Any

from ..usage import Usage
from .taxonomy import FAMILY, summarise_failures

HARNESS_ERROR = "harness_error"
"""The stop reason of a run the harness could not grade (a checker that could not load, a lost worker)."""
NOT_GRADED_STOPS = frozenset({HARNESS_ERROR, "workspace_error", "server_error", "crash"})
"""Runs that stopped before the model had a fair try or could be graded: the workspace or its preprocess
failed, a server did not start, the harness crashed, the checker could not run. They are reported apart and
left out of every rate; they are never counted as the model's failure."""

# --- estimators -----------------------------------------------------------------------------------------


def pass_at_k(n: int, c: int, k: int) -> float | None:
    """Unbiased pass@k from n runs with c passes (Chen et al. 2021): the chance that at least one of k runs
    drawn without replacement passes. None when k > n."""
    if k < 1 or k > n:
        return None
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float | None:
    """Unbiased pass^k (tau-bench): the chance that all of k runs drawn without replacement pass. None when
    k > n."""
    if k < 1 or k > n:
        return None
    return comb(c, k) / comb(n, k)


def mean_std(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, population std, sample std); stds are 0 for fewer than two values."""
    if not values:
        return 0.0, 0.0, 0.0
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0, 0.0
    squares = sum((v - mean) ** 2 for v in values)
    return mean, math.sqrt(squares / len(values)), math.sqrt(squares / (len(values) - 1))


# --- the report -------------------------------------------------------------------------------------------


def _get(record: Any, name: str) -> Any:
    return record[name] if isinstance(record, dict) else getattr(record, name)


def _usage(record: Any) -> Usage:
    usage = _get(record, "usage")
    return usage if isinstance(usage, Usage) else Usage.model_validate(usage or {})


def _opt(record: Any, name: str) -> Any:
    return record.get(name) if isinstance(record, dict) else getattr(record, name, None)


def _judge_of(record: Any) -> str | None:
    grade = _get(record, "grade")
    if grade is None:
        return None
    return grade.get("judge_model") if isinstance(grade, dict) else grade.judge_model


def _failure_kind(record: Any) -> str | None:
    if _get(record, "passed"):
        return None
    stop = _get(record, "stop_reason")
    if stop not in ("answer", "claim_done"):
        return stop
    grade = _get(record, "grade")
    if grade is None:
        return "crash"
    checks = grade["checks"] if isinstance(grade, dict) else [c.model_dump() for c in grade.checks]
    kinds = sorted({c["kind"] for c in checks if not c["passed"] and c["kind"] != "claim"})
    return f"failed {'/'.join(kinds)} check" if kinds else "claims below threshold"


def build_report(records: Sequence[Any], tasks: Sequence[Any] = (), *, repeats: int = 1, skipped: Sequence[Any] = (),
                 config: dict[str, Any] | None = None, wall_s: float = 0.0, interrupted: bool = False) -> dict[str, Any]:
    """Everything the three reports show, from run records (RunRecord objects or their dicts)."""
    latest: dict[tuple[str, int], Any] = {}
    for record in records:
        latest[(_get(record, "task"), _get(record, "repeat"))] = record
    everything = sorted(latest.values(), key=lambda r: (_get(r, "task"), _get(r, "repeat")))
    # A harness error (a crashed checker or preprocess, a lost worker) says nothing about the model: such runs
    # are listed apart and left out of every rate.
    ungraded = [r for r in everything if _get(r, "stop_reason") in NOT_GRADED_STOPS]
    runs = [r for r in everything if _get(r, "stop_reason") not in NOT_GRADED_STOPS]
    order = [getattr(t, "id", t) for t in tasks] or sorted({_get(r, "task") for r in everything})
    by_task: dict[str, list[Any]] = {task: [] for task in order}
    for record in runs:
        by_task.setdefault(_get(record, "task"), []).append(record)

    per_task = [_task_row(task, rows) for task, rows in by_task.items()]
    suite = _suite_metrics(by_task, runs, repeats)
    suite["wall_s"] = round(wall_s, 3)
    return {
        "config": config or {},
        "repeats": repeats,
        "interrupted": interrupted,
        # Every run happened (graded or not): an ungraded run is a result, reported apart.
        "complete": all(sum(_get(r, "task") == task for r in everything) >= repeats for task in by_task)
        and not interrupted,
        "suite": suite,
        "tasks": per_task,
        "skipped": [{"id": getattr(s, "id", ""), "source": getattr(s, "source", ""), "reason": getattr(s, "reason", "")}
                    for s in skipped],
        "failures": [{"task": _get(r, "task"), "repeat": _get(r, "repeat"), "stop_reason": _get(r, "stop_reason"),
                      "failure": _get(r, "failure"), "category": _opt(r, "failure_category")}
                     for r in runs if not _get(r, "passed")],
        # Runs whose claims the offline matcher graded because no judge model was configured.
        "matcher_graded": [{"task": _get(r, "task"), "repeat": _get(r, "repeat")} for r in runs
                           if _judge_of(r) == "match"],
        "not_graded": [{"task": _get(r, "task"), "repeat": _get(r, "repeat"), "stop_reason": _get(r, "stop_reason"),
                        "failure": _get(r, "failure")} for r in ungraded],
    }


def _task_row(task: str, rows: Sequence[Any]) -> dict[str, Any]:
    n, c = len(rows), sum(bool(_get(r, "passed")) for r in rows)
    usage = sum((_usage(r) for r in rows), Usage())
    coverages = [_get(r, "coverage") for r in rows if _get(r, "coverage") is not None]
    think: dict[str, dict[str, float]] = {}
    for r in rows:
        for mode, stats in (_get(r, "think") or {}).items():
            stats = stats if isinstance(stats, dict) else stats.model_dump()
            entry = think.setdefault(mode, {"steps": 0, "reasoning_tokens": 0, "seconds": 0.0})
            for key in entry:
                entry[key] += stats.get(key, 0)

    def mean(name: str) -> float:
        return sum(float(_get(r, name) or 0) for r in rows) / n if n else 0.0

    return {
        "task": task, "runs": n, "passes": c, "pass_rate": c / n if n else None,
        "coverage": sum(coverages) / len(coverages) if coverages else None,
        "steps": mean("steps"), "tool_calls": mean("tool_calls"),
        "tokens": {k: (getattr(usage, k) / n if n else 0) for k in
                   ("prompt_tokens", "completion_tokens", "reasoning_tokens", "cache_hit_tokens", "cache_miss_tokens")},
        "cost": mean("cost"), "cost_total": sum(float(_get(r, "cost") or 0) for r in rows),
        "judge_cost": sum(float(_get(r, "judge_cost") or 0) for r in rows),
        "duration_s": mean("duration_s"), "wall_s": mean("wall_s"),
        "stop_reasons": dict(Counter(_get(r, "stop_reason") for r in rows)),
        "failures": [_get(r, "failure") for r in rows if not _get(r, "passed")],
        "think": think,
    }


def _suite_metrics(by_task: dict[str, list[Any]], runs: Sequence[Any], repeats: int) -> dict[str, Any]:
    counted = {task: rows for task, rows in by_task.items() if rows}
    # pass@1 per round: round r's pass rate over the tasks that have a run r; mean and spread over rounds.
    rounds = []
    for r in range(repeats):
        round_runs = [row for rows in counted.values() for row in rows if _get(row, "repeat") == r]
        if round_runs:
            rounds.append(sum(bool(_get(x, "passed")) for x in round_runs) / len(round_runs))
    mean, std, std_sample = mean_std(rounds)
    pass_k: dict[str, float | None] = {}
    pass_hat: dict[str, float | None] = {}
    for k in range(1, repeats + 1):
        at = [pass_at_k(len(rows), sum(bool(_get(x, "passed")) for x in rows), k) for rows in counted.values()]
        hat = [pass_hat_k(len(rows), sum(bool(_get(x, "passed")) for x in rows), k) for rows in counted.values()]
        at_ok, hat_ok = [v for v in at if v is not None], [v for v in hat if v is not None]
        pass_k[str(k)] = sum(at_ok) / len(at_ok) if at_ok else None
        pass_hat[str(k)] = sum(hat_ok) / len(hat_ok) if hat_ok else None
    coverages = [_get(r, "coverage") for r in runs if _get(r, "coverage") is not None]
    usage = sum((_usage(r) for r in runs), Usage())
    think: dict[str, dict[str, float]] = {}
    for r in runs:
        for mode, stats in (_get(r, "think") or {}).items():
            stats = stats if isinstance(stats, dict) else stats.model_dump()
            entry = think.setdefault(mode, {"steps": 0, "reasoning_tokens": 0, "completion_tokens": 0, "seconds": 0.0})
            for key in entry:
                entry[key] += stats.get(key, 0)
    timings: dict[str, float] = {}
    for r in runs:
        for name, value in (_get(r, "timings") or {}).items():
            timings[name] = timings.get(name, 0.0) + float(value)
    n = len(runs)
    return {
        "pass@1": {"mean": mean, "std": std, "std_sample": std_sample, "rounds": rounds,
                   "estimator": pass_k.get("1")},
        "pass@k": pass_k,
        "pass^k": pass_hat,
        "mean_coverage": sum(coverages) / len(coverages) if coverages else None,
        "coverage_pass_rate_0.50": sum(c >= 0.5 for c in coverages) / len(coverages) if coverages else None,
        "totals": {
            "tasks": len(counted), "runs": n, "passes": sum(bool(_get(r, "passed")) for r in runs),
            **usage.model_dump(), "total_tokens": usage.total_tokens,
            "cache_hit_rate": usage.cache_hit_tokens / usage.prompt_tokens if usage.prompt_tokens else None,
            "cost": sum(float(_get(r, "cost") or 0) for r in runs),
            "judge_cost": sum(float(_get(r, "judge_cost") or 0) for r in runs),
            "steps": sum(int(_get(r, "steps") or 0) for r in runs),
            "tool_calls": sum(int(_get(r, "tool_calls") or 0) for r in runs),
            "agent_s": sum(float(_get(r, "duration_s") or 0) for r in runs),
            "run_wall_s": sum(float(_get(r, "wall_s") or 0) for r in runs),
        },
        "mean_per_run": {name: value / n for name, value in timings.items()} if n else {},
        "stop_reasons": dict(Counter(_get(r, "stop_reason") for r in runs)),
        "failure_kinds": dict(Counter(k for k in (_failure_kind(r) for r in runs) if k)),
        # MCP-Atlas's failure taxonomy (agent.eval.taxonomy), for runs whose record carries a category.
        "failure_categories": summarise_failures(_opt(r, "failure_category") for r in runs if not _get(r, "passed")),
        "think": think,
    }


# --- writers ----------------------------------------------------------------------------------------------


def write_reports(out: Path, report: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    (out / "report.md").write_text(render_markdown(report), encoding="utf-8")
    (out / "report.html").write_text(render_html(report), encoding="utf-8")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _money(value: float) -> str:
    return f"${value:.4f}" if value < 10 else f"${value:,.2f}"


def _headline(report: dict[str, Any]) -> list[tuple[str, str]]:
    suite, k = report["suite"], report["repeats"]
    p1 = suite["pass@1"]
    totals = suite["totals"]
    spread = f" (std over {len(p1['rounds'])} rounds)" if len(p1["rounds"]) > 1 else ""
    rows = [("pass@1", f"{_pct(p1['mean'])} ± {_pct(p1['std'])}{spread}")]
    if k > 1:
        rows += [(f"pass@{k}", _pct(suite["pass@k"].get(str(k)))), (f"pass^{k}", _pct(suite["pass^k"].get(str(k))))]
    if suite["mean_coverage"] is not None:
        rows.append(("claims coverage (mean)", f"{suite['mean_coverage']:.3f}"))
        if suite.get("coverage_pass_rate_0.50") is not None:
            rows.append(("claims coverage >= 0.50", _pct(suite["coverage_pass_rate_0.50"])))
    matched = report.get("matcher_graded") or []
    if matched:
        rows.append(("claims graded by", f"the offline matcher, not a judge model, in {len(matched)} run(s)"))
    hit = totals["cache_hit_rate"]
    rows += [
        ("tasks / runs / passes", f"{totals['tasks']} / {totals['runs']} / {totals['passes']}"),
        ("tokens", f"{totals['prompt_tokens']:,} prompt ({_pct(hit)} cache hits), {totals['completion_tokens']:,} "
                   f"completion, {totals['reasoning_tokens']:,} reasoning"),
        ("cost", f"{_money(totals['cost'])} agent + {_money(totals['judge_cost'])} judge"),
        ("time", f"{suite['wall_s']:.1f} s wall; {totals['agent_s']:.1f} s in agent runs"),
        ("stop reasons", ", ".join(f"{k}: {v}" for k, v in sorted(suite["stop_reasons"].items())) or "–"),
    ]
    if report.get("not_graded"):
        rows.append(("not graded", f"{len(report['not_graded'])} run(s): harness errors, not counted"))
    return rows


def render_markdown(report: dict[str, Any]) -> str:
    config = report["config"]
    lines = [f"# Evaluation report{' (interrupted: partial)' if report['interrupted'] else ''}", ""]
    if config:
        lines += [f"model `{config.get('model') or 'per task'}` · think `{config.get('think') or 'per task'}` · "
                  f"k = {report['repeats']}" + (f" · scripted `{config['scripted']}`" if config.get("scripted") else ""), ""]
    lines += ["| metric | value |", "|---|---|", *[f"| {a} | {b} |" for a, b in _headline(report)], ""]
    k = report["repeats"]
    lines += ["## Tasks", "",
              f"| task | passes/{k} | coverage | turns | tool calls | prompt tok | cache hits | completion | "
              "reasoning | cost/run | time/run | stop reasons |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["tasks"]:
        t = row["tokens"]
        cov = "–" if row["coverage"] is None else f"{row['coverage']:.2f}"
        stops = ", ".join(f"{a}: {b}" for a, b in sorted(row["stop_reasons"].items()))
        lines.append(f"| {row['task']} | {row['passes']}/{row['runs']} | {cov} | {row['steps']:.1f} | "
                     f"{row['tool_calls']:.1f} | {t['prompt_tokens']:,.0f} | {t['cache_hit_tokens']:,.0f} | "
                     f"{t['completion_tokens']:,.0f} | {t['reasoning_tokens']:,.0f} | {_money(row['cost'])} | "
                     f"{row['wall_s']:.1f}s | {stops} |")
    think = report["suite"]["think"]
    if think:
        lines += ["", "## Think modes", "", "| mode | steps | reasoning tokens | seconds |", "|---|---|---|---|"]
        for mode, stats in sorted(think.items()):
            lines.append(f"| {mode} | {stats['steps']:.0f} | {stats['reasoning_tokens']:,.0f} | {stats['seconds']:.1f} |")
    overhead = report["suite"]["mean_per_run"]
    if overhead:
        lines += ["", "## Time per run (mean)", "", "| stage | seconds |", "|---|---|",
                  *[f"| {name.removesuffix('_s')} | {value:.3f} |" for name, value in overhead.items()]]
    categories = report["suite"].get("failure_categories") or {}
    if categories.get("modes"):
        lines += ["", "## Failure categories (MCP-Atlas taxonomy)", "", "| family | mode | runs |", "|---|---|---|"]
        lines += [f"| {FAMILY.get(mode, 'other')} | {mode} | {count} |" for mode, count in categories["modes"].items()]
        lines += ["", "By family: " + ", ".join(f"{k} {v}" for k, v in categories["families"].items())]
    if report["failures"]:
        lines += ["", "## Failures", ""]
        for f in report["failures"]:
            reason = (f["failure"] or "").splitlines()[0] if f["failure"] else f["stop_reason"]
            category = f" [{f['category']}]" if f.get("category") else ""
            lines.append(f"- `{f['task']}` r{f['repeat']} ({f['stop_reason']}){category}: {reason}")
    if report.get("matcher_graded"):
        lines += ["", "## Graded by the offline matcher", "",
                  "No judge model was configured (--judge), so the claims of these runs were checked by the "
                  "offline matcher, which is stricter than MCP-Atlas's LLM judge:", ""]
        lines += [f"- `{m['task']}` r{m['repeat']}" for m in report["matcher_graded"]]
    if report["not_graded"]:
        lines += ["", "## Not graded (harness errors, left out of every rate)", ""]
        for f in report["not_graded"]:
            reason = (f["failure"] or "").splitlines()[0] if f["failure"] else f["stop_reason"]
            lines.append(f"- `{f['task']}` r{f['repeat']} ({f['stop_reason']}): {reason}")
    if report["skipped"]:
        lines += ["", "## Not run", ""] + [f"- `{s['id']}` ({s['source']}): {s['reason']}" for s in report["skipped"]]
    return "\n".join(lines) + "\n"


# --- HTML with inline SVG ---------------------------------------------------------------------------------

_GREEN, _RED, _GREY, _BLUE = "#2e7d32", "#c62828", "#9e9e9e", "#1565c0"
_MODE_COLOURS = {"none": "#90caf9", "high": "#1565c0", "max": "#6a1b9a"}


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def svg_pass_rates(rows: Sequence[dict[str, Any]]) -> str:
    """Horizontal bars: pass rate per task."""
    bar_h, label_w, plot_w = 18, 220, 360
    height = bar_h * len(rows) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + plot_w + 70}" height="{height}" '
             'role="img" aria-label="pass rate per task">']
    for x in (0, 0.5, 1):
        gx = label_w + plot_w * x
        parts.append(f'<line x1="{gx}" y1="0" x2="{gx}" y2="{height - 20}" stroke="#ddd"/>'
                     f'<text x="{gx}" y="{height - 6}" font-size="10" text-anchor="middle">{int(x * 100)}%</text>')
    for i, row in enumerate(rows):
        y = i * bar_h
        rate = row["pass_rate"] or 0.0
        colour = _GREEN if rate >= 1 else (_RED if rate == 0 else "#f9a825")
        parts.append(f'<text x="{label_w - 6}" y="{y + 13}" font-size="11" text-anchor="end">{_esc(row["task"][:34])}</text>'
                     f'<rect x="{label_w}" y="{y + 3}" width="{max(plot_w * rate, 1.5):.1f}" height="{bar_h - 6}" '
                     f'fill="{colour}"><title>{_esc(row["task"])}: {row["passes"]}/{row["runs"]}</title></rect>'
                     f'<text x="{label_w + plot_w * rate + 4:.1f}" y="{y + 13}" font-size="10">'
                     f'{row["passes"]}/{row["runs"]}</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_cost_vs_success(rows: Sequence[dict[str, Any]]) -> str:
    """Scatter: mean cost per run (x) against pass rate (y), one point per task."""
    width, height, pad = 520, 300, 44
    costs = [row["cost"] for row in rows]
    top = max(costs) if costs and max(costs) > 0 else 1.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             'aria-label="cost against success">',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - 10}" y2="{height - pad}" stroke="#555"/>',
             f'<line x1="{pad}" y1="10" x2="{pad}" y2="{height - pad}" stroke="#555"/>',
             f'<text x="{(width + pad) / 2}" y="{height - 8}" font-size="11" text-anchor="middle">cost per run (USD)</text>',
             f'<text x="12" y="{(height - pad) / 2}" font-size="11" transform="rotate(-90 12 {(height - pad) / 2})" '
             'text-anchor="middle">pass rate</text>']
    for frac in (0, 0.5, 1):
        y = height - pad - frac * (height - pad - 10)
        x = pad + frac * (width - pad - 10)
        parts.append(f'<text x="{pad - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{int(frac * 100)}%</text>'
                     f'<text x="{x:.1f}" y="{height - pad + 14}" font-size="10" text-anchor="middle">{top * frac:.4g}</text>')
    placed: list[tuple[float, float, float]] = []  # label boxes: (left, right, baseline)
    for row in rows:
        x = pad + (row["cost"] / top) * (width - pad - 10)
        rate = row["pass_rate"] or 0.0
        y = height - pad - rate * (height - pad - 10)
        colour = _GREEN if rate >= 0.5 else _RED
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour}" fill-opacity="0.7">'
                     f'<title>{_esc(row["task"])}: {_money(row["cost"])} per run, {_pct(row["pass_rate"])}</title></circle>')
        # A label only where it does not overlap another; the tooltip always names the task.
        label = row["task"][:22]
        span = 5.0 * len(label)
        left = x - 8 - span if x > width * 0.7 else x + 8
        for baseline in (y + 4, y - 8, y + 16):
            if all(left + span < a or left > b or abs(baseline - c) >= 11 for a, b, c in placed):
                placed.append((left, left + span, baseline))
                parts.append(f'<text x="{left:.1f}" y="{baseline:.1f}" font-size="9" fill="#555">{_esc(label)}</text>')
                break
    parts.append("</svg>")
    return "".join(parts)


def svg_think_modes(think: dict[str, dict[str, float]]) -> str:
    """Bars per think mode: share of steps, reasoning tokens and seconds."""
    measures = [("steps", "steps"), ("reasoning_tokens", "reasoning tokens"), ("seconds", "model seconds")]
    width, row_h, label_w, plot_w = 560, 28, 130, 380
    modes = sorted(think)
    height = row_h * len(measures) + 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             'aria-label="think mode usage">']
    for i, (key, label) in enumerate(measures):
        total = sum(think[m].get(key, 0) for m in modes) or 1
        x: float = label_w
        y = i * row_h + 4
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" font-size="11" text-anchor="end">{label}</text>')
        for mode in modes:
            value = think[mode].get(key, 0)
            w = plot_w * value / total
            if w > 0:
                parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 10}" '
                             f'fill="{_MODE_COLOURS.get(mode, _GREY)}"><title>{_esc(mode)}: {value:,.1f} '
                             f'({value / total:.0%})</title></rect>')
            x += w
    for j, mode in enumerate(modes):
        lx = label_w + j * 90
        parts.append(f'<rect x="{lx}" y="{height - 22}" width="12" height="12" fill="{_MODE_COLOURS.get(mode, _GREY)}"/>'
                     f'<text x="{lx + 16}" y="{height - 12}" font-size="11">{_esc(mode)}</text>')
    parts.append("</svg>")
    return "".join(parts)


_CSS = """body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f5f5f5}
td.num{text-align:right;font-variant-numeric:tabular-nums}.pass{color:#2e7d32;font-weight:600}
.fail{color:#c62828;font-weight:600}.charts{display:flex;flex-wrap:wrap;gap:24px}.muted{color:#777}"""


def render_html(report: dict[str, Any]) -> str:
    """A single file: tables and inline SVG charts, no scripts and nothing fetched."""
    suite, k = report["suite"], report["repeats"]
    head = "".join(f"<tr><th>{_esc(a)}</th><td>{_esc(b)}</td></tr>" for a, b in _headline(report))
    rows = []
    for row in report["tasks"]:
        t = row["tokens"]
        css = "pass" if row["runs"] and row["passes"] == row["runs"] else ("fail" if row["passes"] == 0 else "")
        why = "; ".join(sorted({(f or "").splitlines()[0][:120] for f in row["failures"] if f}))
        cov = "–" if row["coverage"] is None else f"{row['coverage']:.2f}"
        rows.append(
            f'<tr><td>{_esc(row["task"])}</td><td class="num {css}">{row["passes"]}/{row["runs"]}</td>'
            f'<td class="num">{cov}</td>'
            f'<td class="num">{row["steps"]:.1f}</td><td class="num">{row["tool_calls"]:.1f}</td>'
            f'<td class="num">{t["prompt_tokens"]:,.0f}</td><td class="num">{t["cache_hit_tokens"]:,.0f}</td>'
            f'<td class="num">{t["completion_tokens"]:,.0f}</td><td class="num">{t["reasoning_tokens"]:,.0f}</td>'
            f'<td class="num">{_money(row["cost"])}</td><td class="num">{row["wall_s"]:.1f}s</td>'
            f'<td>{_esc(", ".join(f"{a}: {b}" for a, b in sorted(row["stop_reasons"].items())))}</td>'
            f'<td class="muted">{_esc(why)}</td></tr>')
    charts = [f"<div><h2>Pass rate per task</h2>{svg_pass_rates(report['tasks'])}</div>",
              f"<div><h2>Cost vs success</h2>{svg_cost_vs_success(report['tasks'])}</div>"]
    if suite["think"]:
        charts.append(f"<div><h2>Think-mode usage</h2>{svg_think_modes(suite['think'])}</div>")
    categories = suite.get("failure_categories") or {}
    taxonomy = ""
    if categories.get("modes"):
        taxonomy = ("<h2>Failure categories (MCP-Atlas taxonomy)</h2><table><tr><th>family</th><th>mode</th>"
                    "<th>runs</th></tr>" + "".join(
                        f"<tr><td>{_esc(FAMILY.get(m, 'other'))}</td><td>{_esc(m)}</td><td class=\"num\">{c}</td></tr>"
                        for m, c in categories["modes"].items()) + "</table>")
    matched = report.get("matcher_graded") or []
    if matched:
        taxonomy += ("<h2>Graded by the offline matcher</h2><p>No judge model was configured: "
                     + ", ".join(f"<code>{_esc(m['task'])}</code> r{m['repeat']}" for m in matched) + "</p>")
    skipped = ""
    if report["skipped"]:
        skipped = "<h2>Not run</h2><ul>" + "".join(
            f"<li><code>{_esc(s['id'])}</code> ({_esc(s['source'])}): {_esc(s['reason'])}</li>"
            for s in report["skipped"]) + "</ul>"
    title = "Evaluation report" + (" (interrupted: partial)" if report["interrupted"] else "")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title><style>{_CSS}</style></head>
<body><h1>{_esc(title)}</h1>
<p class="muted">{_esc(json.dumps({k2: v for k2, v in report["config"].items() if k2 != "tasks"}, default=str))}</p>
<table>{head}</table>
<div class="charts">{"".join(charts)}</div>
<h2>Tasks</h2>
<table><tr><th>task</th><th>passes/{k}</th><th>coverage</th><th>turns</th><th>tool calls</th><th>prompt tok</th>
<th>cache hits</th><th>completion</th><th>reasoning</th><th>cost/run</th><th>time/run</th><th>stop reasons</th>
<th>failures</th></tr>{"".join(rows)}</table>{taxonomy}{skipped}
</body></html>
"""
