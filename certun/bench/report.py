"""Reporting a benchmark run: a markdown leaderboard, plots, a self-contained HTML page.

* :func:`markdown` -- one row per method, one column per metric (value and interval);
* :func:`write_results` -- ``results.json`` (the whole report), ``leaderboard.md``, one plot
  per metric in ``plots/`` (methods on the vertical axis, intervals as error bars, the
  retrain oracle marked by a dashed line: exact retraining's value, or the oracle-vs-
  independent-oracle null level for KLoM and U-LiRA) and ``index.html`` (the leaderboard,
  the configuration, seeds and versions, the plots inlined as data URIs: no external URL).
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

from certun.io import atomic_write_bytes, atomic_write_text

__all__ = ["markdown", "write_results", "fmt"]


def fmt(m: dict | None) -> str:
    """``value [lower, upper]`` with 3 significant digits (``n/a`` when missing)."""
    if not m:
        return "n/a"
    v = m.get("value")
    if m.get("status") in ("none", "fails"):
        return "inf"
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    s = f"{v:.3g}"
    lo, hi = m.get("lower"), m.get("upper")
    if lo is not None and hi is not None and not (math.isnan(lo) or math.isnan(hi)):
        s += f" [{lo:.3g}, {hi:.3g}]"
    return s


def markdown(report: dict) -> str:
    """The leaderboard as a markdown table (rank in each column after the value)."""
    metrics = report["metrics"]
    head = ["method", "family"] + [m["label"] for m in metrics]
    lines = [f"certun bench: task {report['task']['name']}, forget {report['forget']['kind']} "
             f"(m = {report['forget']['m']}), N = {report['config']['ensemble']} models per "
             f"ensemble, {report['seconds']:.0f} s",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in report["methods"]:
        if r["status"] != "ok":
            lines.append(f"| {r['name']} | {r['family']} | " + " | ".join(
                [f"{r['status']}: {r.get('reason', '')}"] + [""] * (len(metrics) - 1)) + " |")
            continue
        cells = []
        for m in metrics:
            rk = r.get("ranks", {}).get(m["key"])
            cells.append(fmt(r["metrics"].get(m["key"])) + (f" (#{rk})" if rk else ""))
        lines.append(f"| {r['name']} | {r['family']} | " + " | ".join(cells) + " |")
    lines += ["", "Intervals: 95 % (t over seeds; bootstrap over examples for KLoM; bootstrap "
              "over seeds (models) for the two-version and U-LiRA AUCs). KLoM null (median and "
              "95 % range between random halves of retrain's 2N oracle models): "
              + ", ".join(f"{s} {fmt(_null(report, 'klom_' + s))}"
                          for s in ("forget", "retain", "val")) + "."]
    notes = [f"{r['name']} ({_audit_note(r['metrics']['epsilon_lower'])})"
             for r in report["methods"] if r["status"] == "ok" and "epsilon_lower" in r["metrics"]]
    if notes:
        lines += ["", "emp. eps LB: " + "; ".join(notes) + "."]
    return "\n".join(lines)


def _audit_note(m: dict) -> str:
    """How the epsilon lower bound was obtained, or why there is none."""
    if m.get("reason"):
        return str(m["reason"])
    return f"{m.get('audit') or 'audit'}, {m.get('n') or 0} runs per world"


def _null(report: dict, key: str) -> dict | None:
    for r in report["methods"]:
        if r["name"] == "retrain" and r["status"] == "ok":
            return r["metrics"].get(key, {}).get("null")
    return None


def _oracle_mark(report: dict, key: str) -> float | None:
    for r in report["methods"]:
        if r["name"] == "retrain" and r["status"] == "ok":
            m = r["metrics"].get(key, {})
            src = m.get("null") if key.startswith(("klom", "ulira")) else m
            v = (src or {}).get("value")
            return None if v is None or not math.isfinite(v) else float(v)
    return None


def _plot(report: dict, metric: dict) -> bytes | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(r["name"], r["metrics"].get(metric["key"], {})) for r in report["methods"]
            if r["status"] == "ok"]
    rows = [(n, m) for n, m in rows if m.get("value") is not None
            and math.isfinite(m["value"])]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6.0, 0.35 * len(rows) + 1.2))
    names = [n for n, _ in rows]
    vals = [m["value"] for _, m in rows]
    err = [[max(v - (m.get("lower") if m.get("lower") is not None else v), 0) for v, (_, m)
            in zip(vals, rows, strict=True)],
           [max((m.get("upper") if m.get("upper") is not None else v) - v, 0) for v, (_, m)
            in zip(vals, rows, strict=True)]]
    ax.barh(range(len(rows)), vals, xerr=err, color="#4c72b0", capsize=3)
    ax.set_yticks(range(len(rows)), names)
    ax.invert_yaxis()
    mark = _oracle_mark(report, metric["key"])
    if mark is not None:
        ax.axvline(mark, color="#c44e52", ls="--", label="retrain oracle")
        ax.legend(loc="best", fontsize=8)
    ax.set_xlabel(f"{metric['label']} ({metric['better']} is better)")
    ax.set_title(f"{report['task']['name']}: {metric['label']}", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _rank_html(r: dict, key: str) -> str:
    rk = r.get("ranks", {}).get(key)
    return f" <small>#{rk}</small>" if rk else ""


def _html(report: dict, plots: dict[str, bytes]) -> str:
    esc = html.escape
    metrics = report["metrics"]
    head = "".join(f"<th title='{esc(m['definition'])}'>{esc(m['label'])}</th>" for m in metrics)
    body = []
    for r in report["methods"]:
        if r["status"] != "ok":
            body.append(f"<tr><td>{esc(r['name'])}</td><td>{esc(r['family'])}</td>"
                        f"<td colspan='{len(metrics)}'>{esc(r['status'])}: "
                        f"{esc(str(r.get('reason', '')))}</td></tr>")
            continue
        cells = "".join(
            f"<td>{esc(fmt(r['metrics'].get(m['key'])))}"
            f"{_rank_html(r, m['key'])}"
            "</td>" for m in metrics)
        body.append(f"<tr><td title='{esc(r.get('summary', ''))}'>{esc(r['name'])}</td>"
                    f"<td>{esc(r['family'])}</td>{cells}</tr>")
    imgs = "".join(
        f"<figure><img alt='{esc(k)}' src='data:image/png;base64,"
        f"{base64.b64encode(v).decode()}'/></figure>" for k, v in plots.items())
    defs = "".join(f"<li><b>{esc(m['label'])}</b> ({esc(m['better'])} is better): "
                   f"{esc(m['definition'])}</li>" for m in metrics)
    meths = "".join(f"<li><b>{esc(r['name'])}</b> ({esc(r['family'])}): "
                    f"{esc(r.get('summary', ''))}; {esc(r.get('paper', ''))}; "
                    f"<code>{esc(str(r.get('hyperparameters', {})))}</code></li>"
                    for r in report["methods"])

    def kv(d: dict) -> str:
        return "".join(f"<tr><td>{esc(str(k))}</td><td><code>{esc(str(v))}</code></td></tr>"
                       for k, v in d.items())

    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}"
             "th{background:#eee}figure{display:inline-block;margin:4px}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>certun bench: "
            f"{esc(report['task']['name'])}</title><style>{style}</style></head><body>"
            f"<h1>certun bench: {esc(report['task']['name'])}</h1>"
            f"<p>Forget set: {esc(str(report['forget']['kind']))}, m = {report['forget']['m']}. "
            f"{report['config']['ensemble']} models per ensemble; {report['seconds']:.0f} s.</p>"
            f"<table><tr><th>method</th><th>family</th>{head}</tr>{''.join(body)}</table>"
            f"<h2>Metrics</h2><ul>{defs}</ul><h2>Methods</h2><ul>{meths}</ul>"
            f"<h2>Plots</h2>{imgs}"
            f"<h2>Configuration</h2><table>{kv(report['config'])}{kv(report['task'])}</table>"
            f"<h2>Seeds</h2><table>{kv(report['seeds'])}</table>"
            f"<h2>Versions</h2><table>{kv(report['versions'])}</table>"
            f"<p>Started {esc(report['started'])}; cache {esc(report['cache']['dir'])} "
            f"({report['cache']['hits']} hits, {report['cache']['misses']} misses).</p>"
            "</body></html>")


def write_results(report: dict, directory: str | Path, *, plots: bool = True) -> Path:
    """Write ``results.json``, ``leaderboard.md``, ``plots/*.png`` and ``index.html``.

    Args:
      report: the report of :func:`certun.bench.run`.
      directory: the results directory (created).
      plots: draw the plots (matplotlib); ``False`` skips them.

    Returns:
      The path of ``index.html``.
    """
    from certun import provenance

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    provenance.write_results(d / "results.json", report)
    atomic_write_text(d / "leaderboard.md", markdown(report) + "\n")
    pngs: dict[str, bytes] = {}
    if plots:
        for m in report["metrics"]:
            png = _plot(report, m)
            if png is not None:
                pngs[m["key"]] = png
                atomic_write_bytes(d / "plots" / f"{m['key']}.png", png)
    return atomic_write_text(d / "index.html", _html(report, pngs))
