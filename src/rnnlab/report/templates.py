"""The report's look: inline CSS and page skeletons as plain Python strings (no template engine,
no external resources: the HTML file is self-contained and opens offline)."""

CSS = """
:root { --holds: #1a7f37; --fails: #cf222e; --inconclusive: #6e7781; --notrun: #8c959f;
        --border: #d0d7de; --bg-soft: #f6f8fa; }
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; line-height: 1.5;
       color: #1f2328; margin: 0; padding: 0 1rem 4rem; background: #fff; }
main { max-width: 1200px; margin: 0 auto; }
h1 { font-size: 1.8rem; margin: 1.5rem 0 0.3rem; }
h2 { font-size: 1.35rem; margin: 2.5rem 0 0.4rem; padding-top: 1rem;
     border-top: 2px solid var(--border); }
h3 { font-size: 1.05rem; margin: 1.4rem 0 0.4rem; }
p.meta { color: #59636e; margin: 0.2rem 0; font-size: 0.92rem; }
table { border-collapse: collapse; width: 100%; margin: 0.6rem 0 1rem; font-size: 0.88rem; }
th, td { border: 1px solid var(--border); padding: 0.3rem 0.5rem; text-align: left;
         vertical-align: top; }
th { background: var(--bg-soft); }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
td code, p code, li code { font-size: 0.85em; background: var(--bg-soft); padding: 0 0.2em;
                           border-radius: 3px; word-break: break-word; }
.verdict { display: inline-block; min-width: 6.5em; text-align: center; font-weight: 600;
           border-radius: 1em; padding: 0 0.6em; color: #fff; white-space: nowrap; }
.verdict.holds { background: var(--holds); }
.verdict.fails { background: var(--fails); }
.verdict.inconclusive { background: var(--inconclusive); }
.verdict.not-run, .verdict.failed, .verdict.incomplete { background: #fff; color: var(--notrun);
           border: 1px dashed var(--notrun); }
.verdict.failed { color: var(--fails); border-color: var(--fails); }
tr.fails td { background: #fff5f5; }
.fail-note { border-left: 4px solid var(--fails); background: #fff5f5; padding: 0.4rem 0.7rem;
             margin: 0.5rem 0; }
.inconclusive-note { border-left: 4px solid var(--inconclusive); background: var(--bg-soft);
                     padding: 0.4rem 0.7rem; margin: 0.5rem 0; }
.error-note { border-left: 4px solid var(--fails); background: #fff5f5; padding: 0.4rem 0.7rem;
              white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 0.85rem; }
.question { font-style: italic; }
figure { margin: 1rem 0; }
figure img { width: 100%; height: auto; border: 1px solid var(--border); }
figcaption { color: #59636e; font-size: 0.85rem; text-align: center; }
.counts span { margin-right: 1em; }
nav.toc ol { columns: 2; font-size: 0.92rem; }
/* claim ids are long hyphenated words: let them break (after a hyphen first) and keep the
   statement column wide enough to read */
td.id { width: 13em; max-width: 13em; }
td.id code { white-space: normal; overflow-wrap: anywhere; }
td.text { min-width: 20em; }
table.summary td.paper, table.summary td:first-child { white-space: nowrap; }
details > summary { cursor: pointer; color: #0969da; }
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<main>
{body}
</main>
</body>
</html>
"""

PAPERS = {
    "mehta": ("Mehta", "Empirical Evaluation of Trainability, Generalizability and Capacity of "
                       "Recurrent Neural Networks"),
    "sterin": ("Stérin, Farrugia, Gripon", "An Intrinsic Difference Between Vanilla RNNs and GRU "
                                           "Models"),
    "beyond": ("beyond the papers", "experiments that extend the two papers"),
}

#: short paper names for the summary table
SHORT = {"mehta": "Mehta", "sterin": "Stérin et al.", "beyond": "beyond"}
