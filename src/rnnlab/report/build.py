"""Build the reproduction report from a results folder.

``OUT/<experiment>/`` holds what :func:`rnnlab.experiments.base.run` wrote: ``config.json``
(config, paper, source, question, choices), ``claims.json`` (written last: marks a finished run),
``run.json`` (wall time, shards), ``*.png`` / ``*.svg`` figures and ``*.parquet`` tables.
``OUT/reproduce.json`` (optional, written by ``rnnlab reproduce``) adds the total wall time and
the experiments that failed; ``OUT/compare-CELL/ranking.json`` (``rnnlab compare-cell``) adds a
section ranking that cell against the baselines on every claim (:mod:`rnnlab.compare`).

:func:`build_report` writes two files into OUT:

* ``report.html`` -- one self-contained page: inline CSS, figures embedded as base64 PNG, no
  external resource of any kind;
* ``report.md`` -- the same content in Markdown, linking the PNG files relatively.
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ..errors import ConfigError, RnnlabError
from . import templates

VERDICT_ORDER = ("holds", "fails", "inconclusive")


@dataclass
class Entry:
    """One experiment as the report shows it."""
    name: str
    paper: str = "?"
    source: str = ""
    question: str = ""
    status: str = "not run"          # done | not run | failed | incomplete
    config: dict = field(default_factory=dict)
    choices: dict = field(default_factory=dict)
    claims: list = field(default_factory=list)
    run: dict = field(default_factory=dict)
    figures: list = field(default_factory=list)       # Paths of PNG files
    tables: list = field(default_factory=list)        # (file name, rows)
    error: str | None = None
    folder: Path | None = None

    @property
    def scale(self) -> str:
        return str(self.config.get("scale", "?")) if self.config else "?"


# --------------------------------------------------------------------------- reading


def _read_json(path: Path):
    return json.loads(path.read_text())


def _registry(registry):
    if registry is not None:
        return registry
    from .. import experiments
    return experiments.registry()


def read_reproduce(out_dir: Path) -> dict:
    p = Path(out_dir) / "reproduce.json"
    if not p.exists():
        return {}
    try:
        d = _read_json(p)
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def collect(out_dir: str | os.PathLike, registry: Mapping | None = None) -> list[Entry]:
    """One Entry per registered experiment (registry order), then per other folder of
    ``out_dir`` that holds a ``config.json`` (sorted)."""
    out_dir = Path(out_dir)
    reg = _registry(registry)
    repro = read_reproduce(out_dir)
    failed_at = repro.get("finished", 0) or 0
    failures = {n: d.get("error") for n, d in (repro.get("experiments") or {}).items()
                if isinstance(d, dict) and d.get("status") == "failed"}
    names = list(reg)
    extra = sorted(p.name for p in out_dir.iterdir()
                   if p.is_dir() and p.name not in reg and (p / "config.json").exists()) \
        if out_dir.is_dir() else []
    entries = []
    for name in names + extra:
        mod = reg.get(name)
        e = Entry(name=name)
        if mod is not None:
            e.paper = getattr(mod, "PAPER", "?")
            e.source = getattr(mod, "SOURCE", "")
            e.question = getattr(mod, "QUESTION", "")
            e.choices = dict(getattr(mod, "CHOICES", {}) or {})
        _read_folder(e, out_dir / name)
        if name in failures:
            claims_file = out_dir / name / "claims.json"
            newer = claims_file.exists() and claims_file.stat().st_mtime > failed_at
            if not newer:
                e.status, e.error, e.claims, e.figures = "failed", failures[name] or "failed", [], []
        entries.append(e)
    return entries


def _read_folder(e: Entry, folder: Path) -> None:
    if not folder.is_dir():
        return
    e.folder = folder
    cfg_file, claims_file, run_file = folder / "config.json", folder / "claims.json", folder / "run.json"
    try:
        if cfg_file.exists():
            cfg = _read_json(cfg_file)
            e.config = dict(cfg.get("config") or {})
            e.paper = cfg.get("paper", e.paper)
            e.source = cfg.get("source", e.source) or e.source
            e.question = cfg.get("question", e.question) or e.question
            if cfg.get("choices") is not None:
                e.choices = dict(cfg["choices"])
        if run_file.exists():
            e.run = dict(_read_json(run_file))
        if claims_file.exists():
            claims = _read_json(claims_file)
            if not isinstance(claims, list):
                raise ValueError("claims.json must hold a list")
            e.claims = [c for c in claims if isinstance(c, dict)]
            e.status = "done"
        elif cfg_file.exists() or any(folder.iterdir()):
            e.status = "incomplete"
            e.error = "the folder has no claims.json: the run did not finish"
    except (OSError, ValueError, AttributeError) as ex:
        e.status = "incomplete"
        e.error = f"unreadable results: {type(ex).__name__}: {ex}"
        e.claims = []
    e.figures = sorted(folder.glob("*.png")) if e.status == "done" else []
    e.tables = []
    for p in sorted(folder.glob("*.parquet")):
        e.tables.append((p.name, _parquet_rows(p)))


def _parquet_rows(p: Path):
    try:
        import pyarrow.parquet as pq
        return pq.ParquetFile(p).metadata.num_rows
    except Exception:  # a damaged table file must not stop the report; it shows as '?'
        return None


# ------------------------------------------------------------------------- formatting


def fmt_num(x) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return str(x)
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(v):
        return "—"
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
        return f"{v:.3g}"
    return f"{v:.4g}"


def fmt_interval(iv) -> str:
    if not iv or len(iv) != 2:
        return "—"
    return f"[{fmt_num(iv[0])}, {fmt_num(iv[1])}]"


def fmt_wall(s) -> str:
    try:
        s = float(s)
    except (TypeError, ValueError):
        return "—"
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    return f"{m} min {sec:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


def fmt_value(v) -> str:
    """A config value in compact JSON."""
    if isinstance(v, str):
        return v
    return json.dumps(v, separators=(", ", ": "), default=str)


def threshold_text(c: dict) -> str:
    d = c.get("details") or {}
    if "threshold" in d:
        t = f"{d.get('direction', '>')} {fmt_num(d['threshold'])}"
        if "fails_at" in d and d["fails_at"] != d["threshold"]:
            t += f" (fails {'<' if d.get('direction', '>') == '>' else '>'} {fmt_num(d['fails_at'])})"
        return t
    return ""


def sample_text(c: dict) -> str:
    """n used and the n the declaration's power calculation asks for."""
    d = c.get("details") or {}
    if "n" not in d:
        return ""
    s = f"{d['n']}"
    if d.get("required_n") is not None:
        s += f" / {d['required_n']}"
    return s


def decision_note(c: dict) -> str:
    """Why an undecided claim is undecided and what would decide it; for a failed one, the paper's
    sentence it tests and the figure that shows the evidence."""
    d = c.get("details") or {}
    parts = []
    if c.get("verdict") == "inconclusive":
        if d.get("reason"):
            parts.append(f"Why: {d['reason']}")
        n = d.get("n_to_decide")
        if n is not None:
            sug = d.get("suggested_config")
            cfg = (" (" + ", ".join(f"{k}={v}" for k, v in sug.items()) + ")") if sug else ""
            parts.append(f"The power estimate says about {n} {d.get('units', 'units')}{cfg} would decide it; "
                         "rnnlab run EXPERIMENT --until-decided adds them in rounds")
    elif c.get("verdict") == "fails":
        if d.get("paper"):
            parts.append(f"Paper: \u201c{d['paper']}\u201d")
        if d.get("figure"):
            parts.append(f"Evidence: figure {d['figure']}")
    return ". ".join(parts)


def claim_sentence(c: dict) -> str:
    """The plain-words statement of a claim's numbers (no markup)."""
    d = c.get("details") or {}
    s = f"{c.get('statistic', 'statistic')} = {fmt_num(c.get('value'))}"
    if c.get("interval"):
        lv = d.get("level", 0.95)
        s += f" ({100 * float(lv):.4g}% interval {fmt_interval(c.get('interval'))}"
        s += f", {d['method']}, n = {d['n']} {d.get('units', '')})".rstrip() if "method" in d else ")"
    t = threshold_text(c)
    if t:
        s += f"; the claim needs {t}"
    note = decision_note(c)
    if note:
        s += f". {note}"
    return s


def verdict_counts(entries) -> dict:
    counts = {v: 0 for v in VERDICT_ORDER}
    for e in entries:
        for c in e.claims:
            counts[c.get("verdict", "inconclusive")] = counts.get(c.get("verdict", "inconclusive"), 0) + 1
    return counts


def _scales(entries) -> str:
    found: dict[str, int] = {}
    for e in entries:
        if e.status == "done":
            found[e.scale] = found.get(e.scale, 0) + 1
    if not found:
        return "—"
    if len(found) == 1:
        return next(iter(found))
    return ", ".join(f"{k} ({n} experiments)" for k, n in found.items())


def _paper_label(paper: str) -> str:
    return templates.SHORT.get(paper, paper)


def _anchor(name: str) -> str:
    return "exp-" + "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)


# ------------------------------------------------------------------------------- HTML

esc = html.escape


def _badge(verdict: str) -> str:
    cls = verdict.replace(" ", "-")
    return f'<span class="verdict {esc(cls)}">{esc(verdict)}</span>'


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    cap = path.stem.replace("_", " ").replace("-", " ")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{esc(path.stem)}">'
            f"<figcaption>{esc(cap)}</figcaption></figure>")


def _rank_cell(r: dict) -> str:
    rank = r.get("rank")
    return (("" if rank is None else f"#{int(rank)} ") + f"{r.get('verdict', '')} ({fmt_num(r.get('value'))})")


def _ranking_grid(doc: dict):
    """(cells, rows): rows are (experiment, family, {cell: ranking row}) for the claims that
    name a cell, in the order of the ranking."""
    cells = list(doc.get("against", [])) + [doc.get("cell")]
    grid: dict = {}
    for r in doc.get("ranking", []):
        if r.get("cell"):
            grid.setdefault((r.get("experiment"), r.get("family")), {})[r["cell"]] = r
    return cells, [(e, f, v) for (e, f), v in grid.items()]


def _html_rankings(rankings: list[dict]) -> list[str]:
    b = []
    for doc in rankings:
        cell = str(doc.get("cell"))
        cells, rows = _ranking_grid(doc)
        b.append(f'<h2 id="ranking-{esc(_anchor(cell))}">Ranking: {esc(cell)} against '
                 f'{esc(", ".join(map(str, doc.get("against", []))))}</h2>')
        b.append(f'<p class="meta">rnnlab compare-cell, scale {esc(str(doc.get("scale", "?")))}: '
                 f'{len(doc.get("experiments", []))} experiment(s) of both papers run with these cells; '
                 "within every claim family (the same claim about different cells) cells rank by verdict "
                 "(holds, inconclusive, fails), then by the claim's statistic in the claimed direction."
                 + (f' Every experiment of it in detail: <a href="{esc(doc["_folder"])}/report.html">'
                    f'{esc(doc["_folder"])}/report.html</a>.' if doc.get("_folder") else "") + "</p>")
        b.append('<table class="ranking-summary"><thead><tr><th>cell</th><th>claims</th><th>holds</th>'
                 "<th>inconclusive</th><th>fails</th><th>contested</th><th>wins</th><th>mean rank</th>"
                 "</tr></thead><tbody>")
        for r in doc.get("summary", []):
            b.append(f'<tr data-cell="{esc(str(r.get("cell")))}"><td><code>{esc(str(r.get("cell")))}</code></td>'
                     + "".join(f'<td class="num">{esc(fmt_num(r.get(k)))}</td>'
                               for k in ("claims", "holds", "inconclusive", "fails", "contested", "wins",
                                         "mean_rank")) + "</tr>")
        b.append("</tbody></table>")
        b.append('<table class="ranking"><thead><tr><th>experiment</th><th>claim</th>'
                 + "".join(f"<th><code>{esc(str(c))}</code></th>" for c in cells) + "</tr></thead><tbody>")
        for exp, fam, by in rows:
            b.append(f'<tr><td>{esc(str(exp))}</td><td class="id"><code>{esc(str(fam))}</code></td>'
                     + "".join(f'<td class="num">{esc(_rank_cell(by[c])) if c in by else "—"}</td>' for c in cells)
                     + "</tr>")
        b.append("</tbody></table>")
        if doc.get("skipped"):
            b.append("<p>Not applicable: " + "; ".join(f"<code>{esc(k)}</code> ({esc(str(v))})"
                                                      for k, v in doc["skipped"].items()) + "</p>")
    return b


def _md_rankings(rankings: list[dict]) -> list[str]:
    L = []
    for doc in rankings:
        cells, rows = _ranking_grid(doc)
        L += [f"## Ranking: {doc.get('cell')} against {', '.join(map(str, doc.get('against', [])))}", "",
              f"rnnlab compare-cell, scale {doc.get('scale', '?')}; within every claim family cells rank by "
              "verdict, then by the claim's statistic in the claimed direction.", "",
              "| cell | claims | holds | inconclusive | fails | contested | wins | mean rank |",
              "|---|---|---|---|---|---|---|---|"]
        for r in doc.get("summary", []):
            L.append(f"| `{_md(r.get('cell'))}` | " + " | ".join(fmt_num(r.get(k)) for k in (
                "claims", "holds", "inconclusive", "fails", "contested", "wins", "mean_rank")) + " |")
        L += ["", "| experiment | claim | " + " | ".join(f"`{_md(c)}`" for c in cells) + " |",
              "|---|---|" + "---|" * len(cells)]
        for exp, fam, by in rows:
            L.append(f"| {_md(exp)} | `{_md(fam)}` | "
                     + " | ".join(_md(_rank_cell(by[c])) if c in by else "—" for c in cells) + " |")
        L.append("")
    return L


def render_html(entries: list[Entry], header: dict, rankings: list[dict] = ()) -> str:
    counts = verdict_counts(entries)
    n_claims = sum(counts.values())
    not_run = [e.name for e in entries if e.status != "done"]
    b = []
    b.append("<h1>rnnlab — reproduction report</h1>")
    b.append('<p class="meta">Why do gated recurrent networks train where vanilla ones fail? '
             "Mehta (trainability, capacity) and Stérin et al. (an intrinsic difference), "
             "reproduced with populations of small RNNs.</p>")
    b.append(f'<p class="meta">Scale: <b id="scale">{esc(_scales(entries))}</b> · generated '
             f'{esc(header.get("generated", ""))} · rnnlab {esc(str(header.get("version", "")))}'
             + (f' · total wall time {esc(fmt_wall(header["wall_s"]))}' if header.get("wall_s") else "")
             + (f' · device {esc(str(header["device"]))}' if header.get("device") else "")
             + (f' · backend {esc(str(header["backend"]))}' if header.get("backend") else "")
             + "</p>")
    b.append('<p class="counts">'
             f"<span><b>{n_claims}</b> claims:</span>"
             + "".join(f'<span>{_badge(v)} {counts.get(v, 0)}</span>' for v in VERDICT_ORDER)
             + (f"<span>{len(not_run)} experiment(s) without results: {esc(', '.join(not_run))}</span>"
                if not_run else "")
             + "</p>")
    if header.get("scale_note"):
        b.append(f'<p class="meta">{esc(header["scale_note"])}</p>')

    # summary of every claim
    b.append("<h2 id=\"summary\">Summary of claims</h2>")
    b.append('<table id="summary-table" class="summary"><thead><tr><th>experiment</th><th>paper</th>'
             "<th>claim</th><th>statement</th><th>value</th><th>interval</th><th>verdict</th>"
             "<th>scale</th></tr></thead><tbody>")
    for e in entries:
        link = f'<a href="#{_anchor(e.name)}">{esc(e.name)}</a>'
        if e.status != "done" or not e.claims:
            status = e.status if e.status != "done" else "no claims"
            b.append(f'<tr class="experiment-status" data-experiment="{esc(e.name)}" '
                     f'data-verdict="{esc(status)}"><td>{link}</td><td class="paper">{esc(_paper_label(e.paper))}</td>'
                     f'<td colspan="5">{_badge(status)}</td><td>{esc(e.scale if e.config else "—")}</td></tr>')
            continue
        for c in e.claims:
            v = c.get("verdict", "inconclusive")
            b.append(f'<tr class="claim {esc(v)}" data-experiment="{esc(e.name)}" '
                     f'data-claim="{esc(str(c.get("id", "")))}" data-verdict="{esc(v)}">'
                     f'<td>{link}</td><td class="paper">{esc(_paper_label(e.paper))}</td>'
                     f'<td class="id"><code>{esc(str(c.get("id", "")))}</code></td>'
                     f'<td class="text">{esc(str(c.get("text", "")))}</td>'
                     f'<td class="num">{esc(fmt_num(c.get("value")))}</td>'
                     f'<td class="num">{esc(fmt_interval(c.get("interval")))}</td>'
                     f"<td>{_badge(v)}</td><td>{esc(e.scale)}</td></tr>")
    b.append("</tbody></table>")
    b += _html_rankings(list(rankings))

    b.append('<nav class="toc"><ol>' + "".join(
        f'<li><a href="#{_anchor(e.name)}">{esc(e.name)}</a> ({esc(_paper_label(e.paper))})'
        + ("" if e.status == "done" else f" — {esc(e.status)}") + "</li>" for e in entries)
        + "</ol></nav>")

    for e in entries:
        b.append(_html_section(e))
    return templates.PAGE.format(title="rnnlab reproduction report", css=templates.CSS, body="\n".join(b))


def _html_section(e: Entry) -> str:
    s = [f'<section class="experiment" id="{_anchor(e.name)}" data-status="{esc(e.status)}">',
         f"<h2>{esc(e.name)}</h2>"]
    author, title = templates.PAPERS.get(e.paper, (e.paper, ""))
    s.append(f'<p class="meta">Paper: <b>{esc(author)}</b>'
             + (f", <i>{esc(title)}</i>" if title and e.paper != "beyond" else "")
             + (f" · {esc(e.source)}" if e.source else "") + "</p>")
    if e.question:
        s.append(f'<p class="question">Question: {esc(e.question)}</p>')
    if e.status == "not run":
        s.append(f"<p>{_badge('not run')} No results in this folder: run "
                 f"<code>rnnlab run {esc(e.name)}</code>.</p>")
        s.append("</section>")
        return "\n".join(s)
    if e.status in ("failed", "incomplete"):
        s.append(f"<p>{_badge(e.status)} This experiment has no finished results.</p>")
        if e.error:
            s.append(f'<div class="error-note">{esc(e.error)}</div>')
        s.append("</section>")
        return "\n".join(s)

    for p in e.figures:
        s.append(_img(p))

    s.append("<h3>Claims</h3>")
    if not e.claims:
        s.append("<p>This experiment states no claims.</p>")
    else:
        s.append('<table class="claims"><thead><tr><th>id</th><th>claim</th><th>statistic</th>'
                 "<th>value</th><th>interval</th><th>needs</th><th>n / n to decide</th><th>verdict</th></tr>"
                 "</thead><tbody>")
        for c in e.claims:
            v = c.get("verdict", "inconclusive")
            s.append(f'<tr class="claim {esc(v)}" data-verdict="{esc(v)}">'
                     f'<td class="id"><code>{esc(str(c.get("id", "")))}</code></td>'
                     f'<td class="text">{esc(str(c.get("text", "")))}</td>'
                     f'<td class="text">{esc(str(c.get("statistic", "")))}</td>'
                     f'<td class="num">{esc(fmt_num(c.get("value")))}</td>'
                     f'<td class="num">{esc(fmt_interval(c.get("interval")))}</td>'
                     f'<td class="num">{esc(threshold_text(c))}</td><td class="num">{esc(sample_text(c))}</td>'
                     f'<td>{_badge(v)}</td></tr>')
        s.append("</tbody></table>")
        for c in e.claims:
            v = c.get("verdict")
            if v == "fails":
                s.append(f'<p class="fail-note"><b>Our run does NOT reproduce this claim:</b> '
                         f'{esc(str(c.get("text", "")))} — {esc(claim_sentence(c))}.</p>')
            elif v == "inconclusive":
                s.append(f'<p class="inconclusive-note">Our run is inconclusive on this claim: '
                         f'{esc(str(c.get("text", "")))} — {esc(claim_sentence(c))}.</p>')
        extra = [(c.get("id"), {k: w for k, w in (c.get("details") or {}).items()
                                if k not in ("threshold", "direction")}) for c in e.claims]
        extra = [(i, d) for i, d in extra if d]
        if extra:
            s.append("<details><summary>claim details</summary><ul>" + "".join(
                f"<li><code>{esc(str(i))}</code>: " + ", ".join(
                    f"{esc(str(k))} = {esc(fmt_value(w))}" for k, w in d.items()) + "</li>"
                for i, d in extra) + "</ul></details>")

    s.append("<h3>Settings</h3>")
    s.append(f"<p>Scale: <b>{esc(e.scale)}</b>"
             + (" — fewer inits, draws and epochs than the paper, so that the whole set runs in "
                "minutes" if e.scale == "quick" else "")
             + (" — a smoke-test size" if e.scale == "tiny" else "")
             + (" — the paper's settings" if e.scale == "paper" else "") + ".</p>")
    if e.config:
        s.append('<table class="config"><thead><tr><th>setting</th><th>value</th></tr></thead><tbody>'
                 + "".join(f"<tr><td><code>{esc(str(k))}</code></td><td><code>{esc(fmt_value(v))}</code></td></tr>"
                           for k, v in e.config.items()) + "</tbody></table>")
    if e.choices:
        s.append("<p>Where the paper is silent, we chose:</p>")
        s.append('<table class="choices"><thead><tr><th>choice</th><th>our default</th></tr></thead><tbody>'
                 + "".join(f"<tr><td><code>{esc(str(k))}</code></td><td>{esc(fmt_value(v))}</td></tr>"
                           for k, v in e.choices.items()) + "</tbody></table>")

    s.append("<h3>Run</h3>")
    r = e.run
    parts = [f"wall time {fmt_wall(r.get('wall_s'))}"]
    if "shards_computed" in r:
        parts.append(f"{r.get('shards_computed')} shard(s) computed, {r.get('shards_reused', 0)} reused")
    if r.get("backend"):
        parts.append(f"backend {r['backend']}")
    if r.get("run_id"):
        parts.append(f"run id {r['run_id']}")
    s.append(f'<p class="run">{esc(" · ".join(parts))}</p>')
    if e.tables:
        s.append("<p>Tables: " + ", ".join(
            f"<code>{esc(n)}</code> ({'?' if rows is None else rows} rows)" for n, rows in e.tables) + "</p>")
    s.append("</section>")
    return "\n".join(s)


# --------------------------------------------------------------------------- Markdown


def _md(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(entries: list[Entry], header: dict, rankings: list[dict] = ()) -> str:
    counts = verdict_counts(entries)
    L = ["# rnnlab — reproduction report", ""]
    meta = [f"Scale: **{_scales(entries)}**", f"generated {header.get('generated', '')}",
            f"rnnlab {header.get('version', '')}"]
    if header.get("wall_s"):
        meta.append(f"total wall time {fmt_wall(header['wall_s'])}")
    if header.get("device"):
        meta.append(f"device {header['device']}")
    L += [" · ".join(meta), ""]
    L += [f"{sum(counts.values())} claims: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICT_ORDER), ""]
    L += ["## Summary of claims", "",
          "| experiment | paper | claim | statement | value | interval | verdict | scale |",
          "|---|---|---|---|---|---|---|---|"]
    for e in entries:
        if e.status != "done" or not e.claims:
            L.append(f"| {e.name} | {_md(_paper_label(e.paper))} | | | | | **{e.status if e.status != 'done' else 'no claims'}** | "
                     f"{e.scale if e.config else '—'} |")
            continue
        for c in e.claims:
            v = c.get("verdict", "inconclusive")
            mark = {"holds": "✅ holds", "fails": "❌ **FAILS**", "inconclusive": "➖ inconclusive"}.get(v, v)
            L.append(f"| {e.name} | {_md(_paper_label(e.paper))} | `{_md(c.get('id', ''))}` | {_md(c.get('text', ''))} | "
                     f"{fmt_num(c.get('value'))} | {fmt_interval(c.get('interval'))} | {mark} | {e.scale} |")
    L.append("")
    L += _md_rankings(list(rankings))
    for e in entries:
        author, title = templates.PAPERS.get(e.paper, (e.paper, ""))
        L += [f"## {e.name}", "",
              f"Paper: **{author}**" + (f", *{title}*" if title and e.paper != "beyond" else "")
              + (f" · {e.source}" if e.source else ""), ""]
        if e.question:
            L += [f"*Question:* {e.question}", ""]
        if e.status == "not run":
            L += [f"**not run** — no results in this folder: `rnnlab run {e.name}`.", ""]
            continue
        if e.status in ("failed", "incomplete"):
            L += [f"**{e.status}** — this experiment has no finished results.", ""]
            if e.error:
                L += ["```", e.error, "```", ""]
            continue
        for p in e.figures:
            L += [f"![{p.stem}]({e.name}/{p.name})", ""]
        L += ["### Claims", ""]
        if e.claims:
            L += ["| id | claim | statistic | value | interval | needs | n / n to decide | verdict |",
                  "|---|---|---|---|---|---|---|---|"]
            for c in e.claims:
                L.append(f"| `{_md(c.get('id', ''))}` | {_md(c.get('text', ''))} | {_md(c.get('statistic', ''))} | "
                         f"{fmt_num(c.get('value'))} | {fmt_interval(c.get('interval'))} | {threshold_text(c)} | "
                         f"{sample_text(c)} | "
                         f"{'**FAILS**' if c.get('verdict') == 'fails' else c.get('verdict')} |")
            L.append("")
            for c in e.claims:
                if c.get("verdict") == "fails":
                    L += [f"> **Our run does NOT reproduce this claim:** {c.get('text', '')} — {claim_sentence(c)}.", ""]
                elif c.get("verdict") == "inconclusive":
                    L += [f"> Our run is inconclusive on this claim: {c.get('text', '')} — {claim_sentence(c)}.", ""]
        else:
            L += ["This experiment states no claims.", ""]
        L += ["### Settings", "", f"Scale: **{e.scale}**", ""]
        if e.config:
            L += ["| setting | value |", "|---|---|"]
            L += [f"| `{_md(k)}` | `{_md(fmt_value(v))}` |" for k, v in e.config.items()]
            L.append("")
        if e.choices:
            L += ["Where the paper is silent, we chose:", "", "| choice | our default |", "|---|---|"]
            L += [f"| `{_md(k)}` | {_md(fmt_value(v))} |" for k, v in e.choices.items()]
            L.append("")
        r = e.run
        run_line = f"Run: wall time {fmt_wall(r.get('wall_s'))}"
        if "shards_computed" in r:
            run_line += f", {r.get('shards_computed')} shard(s) computed, {r.get('shards_reused', 0)} reused"
        L += [run_line, ""]
    return "\n".join(L) + "\n"


# ------------------------------------------------------------------------------ entry


def build_report(out_dir: str | os.PathLike = "results", registry: Mapping | None = None,
                 header: dict | None = None) -> tuple[Path, Path]:
    """Write ``out_dir/report.html`` and ``out_dir/report.md``; return their paths.

    ``registry`` maps experiment names to modules (default: every registered experiment);
    ``header`` adds facts for the top of the page (``wall_s``, ``device``, ``backend``).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out: {out} is a file, not a results folder")
    if not out.is_dir():
        raise ConfigError(f"out: results folder {out} does not exist")
    from .. import __version__
    repro = read_reproduce(out)
    head = {"generated": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "version": __version__,
            "wall_s": repro.get("wall_s"), "device": repro.get("device"), "backend": repro.get("backend")}
    head.update(header or {})
    entries = collect(out, registry)
    from ..compare import read_rankings
    rankings = read_rankings(out)
    html_path, md_path = out / "report.html", out / "report.md"
    try:
        _atomic_text(html_path, render_html(entries, head, rankings))
        _atomic_text(md_path, render_markdown(entries, head, rankings))
    except OSError as e:
        raise RnnlabError(f"out: cannot write the report into {out}: {e.strerror or e}") from None
    return html_path, md_path


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
