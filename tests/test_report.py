"""The report: built from a fake results folder (2 experiments, one failing claim, one
experiment not run); checked as text, then opened in headless Chromium (marked `browser`)."""
from __future__ import annotations

import json
import os
import re
import shutil
import time
import types
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from rnnlab.errors import ConfigError  # noqa: E402
from rnnlab.report import build_report, collect  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

CLAIMS = {
    "alpha": [
        {"id": "alpha-gap", "text": "GRU reaches high accuracy in more grid cells than RNN.",
         "statistic": "fraction(GRU) - fraction(RNN)", "value": 0.4, "interval": [0.2, 0.6],
         "verdict": "holds", "details": {"threshold": 0.0, "direction": ">"}},
        {"id": "alpha-xor-harder", "text": "Xor is harder than First for both cells.",
         "statistic": "median acc(First) - median acc(Xor)", "value": -0.05, "interval": [-0.1, -0.01],
         "verdict": "fails", "details": {"threshold": 0.0, "direction": ">", "n": 12}},
    ],
    "beta": [
        {"id": "beta-long-term", "text": "The GRU gets the long-term symbol right, the RNN does not.",
         "statistic": "acc(GRU) - acc(RNN)", "value": 0.31, "interval": None, "verdict": "holds",
         "details": {}},
        {"id": "beta-similar", "text": "The two gradient distributions are similar.",
         "statistic": "KS distance", "value": 0.12, "interval": [0.05, 0.3], "verdict": "inconclusive",
         "details": {"threshold": 0.2, "direction": "<"}},
    ],
}


def _module(name, paper, order):
    return types.SimpleNamespace(NAME=name, PAPER=paper, ORDER=order, SOURCE=f"{name} source, Fig. {order}",
                                 QUESTION=f"What does {name} show?", CHOICES={"batch_size": "32 (ours)"})


REGISTRY = {"alpha": _module("alpha", "mehta", 1), "beta": _module("beta", "sterin", 2),
            "gamma": _module("gamma", "sterin", 3)}


def _experiment_folder(out: Path, name: str, paper: str, n_figs: int) -> None:
    d = out / name
    d.mkdir(parents=True)
    for k in range(n_figs):
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.plot([0, 1, 2], [k, 2 * k + 1, 0], label=f"curve {k}")
        ax.set_title(f"{name} figure {k}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy")
        ax.legend()
        fig.savefig(d / f"fig{k}.png", dpi=60)
        fig.savefig(d / f"fig{k}.svg")
        plt.close(fig)
    pd.DataFrame({"model": range(5), "acc": [0.5, 0.6, 0.7, 0.8, 0.9]}).to_parquet(d / "summary.parquet")
    cfg = {"seed": 0, "cells": ["rnn-tanh", "gru"], "inits": 3, "scale": "quick"}
    (d / "config.json").write_text(json.dumps({
        "experiment": name, "run_id": f"{name}-run", "paper": paper, "source": f"{name} source",
        "question": f"What does {name} show?", "config": cfg,
        "choices": {"batch_size": "32: the paper does not give it"}}))
    (d / "run.json").write_text(json.dumps({"run_id": f"{name}-run", "wall_s": 12.5, "shards_computed": 2,
                                            "shards_reused": 0, "backend": "local"}))
    (d / "claims.json").write_text(json.dumps(CLAIMS[name]))


@pytest.fixture
def results(tmp_path):
    out = tmp_path / "results"
    _experiment_folder(out, "alpha", "mehta", 2)
    _experiment_folder(out, "beta", "sterin", 1)
    return out


def test_report_html_and_markdown(results):
    html_path, md_path = build_report(results, registry=REGISTRY)
    assert html_path == results / "report.html" and md_path == results / "report.md"
    html = html_path.read_text()
    # self-contained: every figure embedded, nothing fetched from elsewhere
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) == 3
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<script" not in html and "<link" not in html
    # summary table lists every claim, with its verdict
    summary = html.split('id="summary-table"')[1].split("</table>")[0]
    for name, claims in CLAIMS.items():
        for c in claims:
            assert f'data-claim="{c["id"]}" data-verdict="{c["verdict"]}"' in summary
    assert 'data-experiment="gamma" data-verdict="not run"' in summary
    # a failed claim is said plainly; settings, choices and wall time are shown
    assert "Our run does NOT reproduce this claim:" in html
    assert "Xor is harder than First for both cells." in html.split("Our run does NOT reproduce")[1]
    assert "Our run is inconclusive on this claim:" in html
    assert "32: the paper does not give it" in html and "12.5 s" in html
    assert 'id="scale">quick<' in html
    assert "summary.parquet</code> (5 rows)" in html

    md = md_path.read_text()
    for rel in ("alpha/fig0.png", "alpha/fig1.png", "beta/fig0.png"):
        assert f"]({rel})" in md and (results / rel).exists()
    assert "**Our run does NOT reproduce this claim:** Xor is harder" in md
    assert "| gamma |" in md and "**not run**" in md
    for claims in CLAIMS.values():
        for c in claims:
            assert f"`{c['id']}`" in md


def test_report_statuses(results):
    # an interrupted run (no claims.json), a damaged claims.json, a failure recorded by reproduce,
    # the folder of an experiment no longer registered
    shutil.copytree(results / "alpha", results / "delta2")
    (results / "gamma").mkdir()
    (results / "gamma" / "config.json").write_text(json.dumps({"config": {"scale": "quick"}}))
    (results / "beta" / "claims.json").write_text("{not json")
    (results / "reproduce.json").write_text(json.dumps({
        "finished": time.time() + 10, "wall_s": 75.0,
        "experiments": {"alpha": {"status": "failed", "error": "ConfigError: inits: must be positive"}}}))
    entries = {e.name: e for e in collect(results, REGISTRY)}
    assert entries["alpha"].status == "failed" and "inits" in entries["alpha"].error
    assert entries["beta"].status == "incomplete" and "unreadable" in entries["beta"].error
    assert entries["gamma"].status == "incomplete"
    assert entries["delta2"].status == "done"        # listed after the registered ones
    assert list(entries) == ["alpha", "beta", "gamma", "delta2"]
    html = build_report(results, registry=REGISTRY)[0].read_text()
    assert "inits: must be positive" in html and "1 min 15 s" in html
    # a later successful run of alpha supersedes the recorded failure
    os.utime(results / "alpha" / "claims.json", (time.time() + 60, time.time() + 60))
    assert {e.name: e for e in collect(results, REGISTRY)}["alpha"].status == "done"


def test_report_missing_folder(tmp_path):
    with pytest.raises(ConfigError, match="^out: "):
        build_report(tmp_path / "nope", registry=REGISTRY)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match="^out: .* is a file"):
        build_report(tmp_path / "afile", registry=REGISTRY)


@pytest.mark.browser
def test_report_in_chromium(results):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (make browser installs Debian's chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is missing (pip install -e '.[test]')")
    html_path, _ = build_report(results, registry=REGISTRY)
    shot = REPO / "test-artifacts" / "report.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(html_path.as_uri())
            page.wait_for_load_state("load")
            imgs = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
            assert len(imgs) == 3
            assert all(done and width > 0 for done, width in imgs), imgs
            rows = page.eval_on_selector_all(
                "#summary-table tbody tr.claim",
                "els => els.map(e => [e.dataset.claim, e.dataset.verdict, e.innerText])")
            assert sorted(r[0] for r in rows) == sorted(c["id"] for cs in CLAIMS.values() for c in cs)
            failing = [r for r in rows if r[1] == "fails"]
            assert [r[0] for r in failing] == ["alpha-xor-harder"] and "fails" in failing[0][2]
            colour = page.eval_on_selector("#summary-table tr.claim.fails .verdict",
                                           "e => getComputedStyle(e).backgroundColor")
            assert colour == "rgb(207, 34, 46)"          # red
            colour = page.eval_on_selector("#summary-table tr.claim.holds .verdict",
                                           "e => getComputedStyle(e).backgroundColor")
            assert colour == "rgb(26, 127, 55)"          # green
            assert page.locator(".fail-note").first.is_visible()
            assert "does NOT reproduce" in page.locator(".fail-note").first.inner_text()
            assert "not run" in page.locator("#summary-table").inner_text()
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000


def test_undecided_and_failed_claims_explain_themselves():
    """An inconclusive claim says why (interval against the boundaries) and what would decide it;
    a failed one quotes the paper's sentence and names the figure with the evidence."""
    from rnnlab.analysis import stats
    from rnnlab.analysis.claims import Declaration
    from rnnlab.report.build import claim_sentence
    decl = Declaration("x-{cell}", "GRU has more good inits ({cell}).", "difference", 0.0, ">", 0.3,
                       "difference", units="models", paper="good initializations are rarer", figure="inits_first")
    undecided = decl.decide(stats.proportion_difference(4, 10, 2, 10), {"cell": "gru"}, scale=("inits", 10)).to_dict()
    assert undecided["verdict"] == "inconclusive"
    s = claim_sentence(undecided)
    assert "Why: interval [" in s and "straddles" in s and "would decide it" in s
    assert f"inits={undecided['details']['suggested_config']['inits']}" in s
    assert undecided["details"]["suggested_config"]["inits"] > 10
    failed = decl.decide(stats.proportion_difference(2, 40, 3, 40), {"cell": "gru"}).to_dict()
    assert failed["verdict"] == "fails"
    s = claim_sentence(failed)
    assert "Paper: \u201cgood initializations are rarer\u201d" in s and "figure inits_first" in s
