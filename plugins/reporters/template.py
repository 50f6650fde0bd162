"""The Jinja2 template of index.html (kept in a module so it ships inside the package)."""

# ruff: noqa: E501  (HTML lines are as long as their markup)

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pcnbench · {{ suite }}</title>
<style>
:root { --ink: #1b1f24; --muted: #5b6470; --line: #d9dee4; --soft: #f4f6f8;
        --accent: #0b5cad; --best: #e3f2e6; --bad: #a61b1b; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff;
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 0 24px 48px; }
header { border-bottom: 1px solid var(--line); background: var(--soft); }
header .inner { max-width: 1240px; margin: 0 auto; padding: 18px 24px 12px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 22px 0 6px; }
nav a { color: var(--accent); margin-right: 16px; text-decoration: none; font-size: 14px; }
nav a:hover { text-decoration: underline; }
.muted { color: var(--muted); }
.headline { font-size: 18px; line-height: 1.45; margin: 14px 0; padding: 12px 16px;
            border-left: 4px solid var(--accent); background: #f0f6fc; }
.status span { display: inline-block; margin-right: 14px; }
.status .failed, .status .interrupted, .status .running { color: var(--bad); font-weight: 600; }
.notes li.bad { color: var(--bad); }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 13.5px; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 7px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { background: var(--soft); font-weight: 600; border-bottom: 2px solid #b9c1ca;
     white-space: normal; vertical-align: bottom; }
td.r, th.r { text-align: right; }
td.wrap { white-space: normal; min-width: 120px; max-width: 240px; }
td.argv { white-space: normal; word-break: break-all; min-width: 240px; }
td.l, th.l { text-align: left; }
tr.dense td { background: #fafbfc; border-bottom: 2px solid #b9c1ca; }
td.best { font-weight: 700; background: var(--best); }
td.muted { color: var(--muted); }
td .sub { display: block; font-size: 11px; color: var(--muted); white-space: normal; }
.notes { font-size: 13px; color: var(--muted); margin: 6px 0 0; padding-left: 18px; }
.legend { font-size: 13px; color: var(--muted); }
figure { margin: 22px 0 30px; }
figure svg { display: block; width: 100%; max-width: 920px; height: auto; }
figcaption { font-size: 13.5px; color: var(--muted); max-width: 900px; margin-top: 6px; }
figcaption b { color: var(--ink); }
figcaption a, .exports a { color: var(--accent); }
pre { background: var(--soft); border: 1px solid var(--line); padding: 10px 12px; overflow-x: auto;
      font: 12.5px/1.45 ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
details summary { cursor: pointer; color: var(--accent); }
td.err { white-space: normal; font-family: ui-monospace, "DejaVu Sans Mono", monospace;
         font-size: 12.5px; color: var(--bad); min-width: 28em; max-width: 60em;
         overflow-wrap: anywhere; }
td.err pre { white-space: pre-wrap; max-height: 24em; overflow: auto; color: var(--ink); }
td.cells { white-space: normal; min-width: 16em; max-width: 32em; overflow-wrap: anywhere; }
td.cells ul { margin: 4px 0 0; padding-left: 18px; }
dl.env { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; font-size: 13.5px; }
dl.env dt { color: var(--muted); }
dl.env dd { margin: 0; font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
table.claims td { vertical-align: top; }
table.claims td.claim { white-space: normal; min-width: 16em; max-width: 30em; }
table.claims td.numbers { white-space: normal; min-width: 24em; }
table.claims td.point { overflow-wrap: break-word; }
table.claims ul { margin: 0; padding-left: 16px; }
.verdict { display: inline-block; padding: 1px 7px; border-radius: 3px; font-weight: 600;
           font-size: 12.5px; white-space: nowrap; }
.verdict.supported { background: var(--best); color: #1d5e2b; }
.verdict.refuted { background: #fbe4e4; color: var(--bad); }
.verdict.inconclusive { background: #fff3d6; color: #7a5200; }
.verdict.not-evaluated { background: var(--soft); color: var(--muted); }
@media print { nav { display: none; } h2 { break-before: auto; } figure { break-inside: avoid; } }
</style>
</head>
<body>
<header><div class="inner">
<h1>{{ suite }}</h1>
{% if description %}<div class="muted">{{ description }}</div>{% endif %}
<nav>{% if claims %}<a href="#claims">Claims</a>{% endif %}<a href="#summary">Summary</a><a href="#tables">Tables</a><a href="#figures">Figures</a>
<a href="#failed">Failed cells</a><a href="#provenance">Provenance</a></nav>
</div></header>
<main>
{% if claims %}
<section id="claims">
<h2>Claims</h2>
<p class="muted">Each claim the suite declares, judged from these results with 95% Student-t
intervals (paired by seed where both sides share seeds, Welch otherwise): <b>supported</b> when
the whole interval satisfies every expectation, <b>refuted</b> when it all violates one,
<b>inconclusive</b> otherwise. Accuracy differences are in percentage points; compression and
speedup are baseline/subject ratios; × marks a ratio subject/baseline elsewhere.</p>
<div class="scroll"><table class="claims">
<thead><tr><th class="l">Verdict</th><th class="l">Claim</th><th class="l">Operating point</th><th class="l">Numbers that decided it</th></tr></thead>
<tbody>
{% for c in claims %}
{% set n = c.points|length if c.points else 1 %}
{% for p in c.points or [none] %}<tr>
{% if loop.first %}<td class="l" rowspan="{{ n }}"><span class="verdict {{ c.css }}" title="{{ c.note }}">{{ c.verdict }}</span></td>
<td class="claim" rowspan="{{ n }}"><b>{{ c.name }}</b>{% if c.comparison %}<span class="sub">{{ c.comparison }}: {{ c.expect }}{% if c.over == "all" %} (every operating point){% endif %}</span>{% endif %}{% if c.reason %}<span class="sub">{{ c.reason }}</span>{% endif %}</td>{% endif %}
{# a setting's label has no spaces: break it after its commas (<wbr>; the parts are escaped) so that it wraps inside its column instead of running over the next #}
{% if p %}<td class="wrap point">{{ p.label.split(",")|join(",<wbr>"|safe) }}{% if p.decided %} <b>(decides)</b>{% endif %}<span class="sub"><span class="verdict {{ p.verdict|replace(" ", "-") }}">{{ p.verdict }}</span> · {{ p.cells }} cells</span></td>
<td class="numbers"><ul>{% for k in p.checks %}<li>{{ k.quantity }} {{ k.text }} {{ k.bound }} <span class="muted">({{ k.how }}; {{ k.verdict }})</span></li>{% endfor %}</ul></td>
{% else %}<td class="muted">—</td><td class="muted">—</td>{% endif %}
</tr>
{% endfor %}
{% endfor %}
</tbody></table></div>
</section>
{% endif %}
<section id="summary">
<h2>Summary</h2>
<p class="headline">{{ headline }}</p>
{% if sharing %}<p>{{ sharing }}</p>{% endif %}
{% if findings %}<ul>{% for f in findings %}<li><b>{{ f.title }}</b>: {{ f.text }}.</li>{% endfor %}</ul>{% endif %}
<p class="status">
<span><b>{{ total }}</b> cells</span>
{% for name, count in status|dictsort %}<span class="{{ name }}">{{ count }} {{ name }}</span>{% endfor %}
</p>
<p class="muted">"Matches" means a mean paired Δ accuracy no lower than −{{ tolerance }} pp
against dense trained with the same seeds; intervals are 95% Student-t over seeds.
Generated {{ generated }}.</p>
</section>

<section id="tables">
<h2>Comparison tables</h2>
<p class="legend">{{ legend }}</p>
{% if exports %}<p class="exports">Exports: {% for e in exports %}<a href="{{ e.href }}">{{ e.text }}</a>{% if not loop.last %} · {% endif %}{% endfor %}</p>{% endif %}
{% for t in tables %}
<h3>{{ t.title }}</h3>
<div class="scroll"><table>
<thead><tr>{% for h in t.headers %}<th class="{{ h.align }}">{{ h.text }}</th>{% endfor %}</tr></thead>
<tbody>
{% for r in t.rows %}<tr{% if r.dense %} class="dense"{% endif %}>{% for c in r.cells %}<td class="{{ c.align }}{% if c.best %} best{% endif %}{% if c.muted %} muted{% endif %}">{{ c.text }}{% if c.sub %}<span class="sub">{{ c.sub }}</span>{% endif %}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table></div>
{% if t.notes %}<ul class="notes">{% for n in t.notes %}<li>{{ n }}</li>{% endfor %}</ul>{% endif %}
{% else %}
<p class="muted">No finished results yet.</p>
{% endfor %}
{% for t in references %}
<h3 class="references">{{ t.title }}</h3>
<p class="legend">{{ reference_note }}</p>
<div class="scroll"><table class="references">
<thead><tr>{% for h in reference_headers %}<th>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>
{% for r in t.rows %}<tr>{% for c in r %}<td>{{ c }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table></div>
{% endfor %}
</section>

<section id="figures">
<h2>Figures</h2>
{% for f in figures %}
<figure id="{{ f.id }}" class="fig-{{ f.kind }}{% if f.method %} method-{{ f.method }}{% endif %}">
{{ f.svg }}
<figcaption><b>{{ f.title }}.</b> {{ f.caption }}
{% if f.links %}Files: {% for l in f.links %}<a href="{{ l.href }}">{{ l.text }}</a>{% if not loop.last %}, {% endif %}{% endfor %}.{% endif %}</figcaption>
</figure>
{% endfor %}
{% if not figures_drawn %}<p class="muted">No figures: the figures reporter did not run.</p>{% endif %}
{% if skipped %}
<h3>Not drawn</h3>
<ul class="notes">{% for s in skipped %}<li{% if s.error %} class="bad"{% endif %}><b>{{ s.title }}</b>: {{ s.why }}.{% if s.error %}<details><summary>traceback</summary><pre>{{ s.error }}</pre></details>{% endif %}</li>{% endfor %}</ul>
{% endif %}
</section>

<section id="failed">
<h2>Failed and unfinished cells</h2>
{% if unfinished %}
{% set n = unfinished|sum(attribute="count") %}<p class="muted">{{ n }} cell{% if n != 1 %}s{% endif %} did not finish, {{ unfinished|length }} distinct reason{% if unfinished|length > 1 %}s{% endif %}: one row per reason (status and last line of the error), most cells first.</p>
<div class="scroll"><table class="failed">
<thead><tr><th class="l">Reason (last line of the error)</th><th class="l">Status</th><th class="r">Cells</th><th class="l">Which cells</th></tr></thead>
<tbody>
{% for g in unfinished %}<tr>
<td class="err">{{ g.summary or "no error recorded" }}{% if g.error and g.error.strip() != g.summary %}<details><summary>full error{% if g.error_note %} ({{ g.error_note }}){% endif %}</summary><pre>{{ g.error }}</pre></details>{% endif %}</td>
<td class="l">{{ g.status }}</td>
<td class="r">{{ g.count }}</td>
<td class="cells">{% if g.count == 1 %}{{ g.cells[0].label }}<span class="sub">{{ g.cells[0].cell_id }}</span>{% else %}<details><summary>{{ g.count }} cells</summary><ul>{% for c in g.cells %}<li>{{ c.label }}<span class="sub">{{ c.cell_id }}</span></li>{% endfor %}</ul></details>{% endif %}</td></tr>
{% endfor %}</tbody></table></div>
{% else %}
<p class="muted">None: every cell finished.</p>
{% endif %}
</section>

<section id="provenance">
<h2>Provenance</h2>
{% if devices %}<p>Device{% if devices|length > 1 %}s{% endif %}: <b>{{ devices|join(", ") }}</b></p>{% endif %}
{% if environment %}<dl class="env">{% for k, v in environment %}<dt>{{ k }}</dt><dd>{{ v }}</dd>{% endfor %}</dl>{% endif %}
{% if runs %}
<h3>Runs</h3>
<div class="scroll"><table>
<thead><tr><th class="r">Run</th><th class="l">Started</th><th class="l">Finished</th><th class="l">Status</th><th class="l">Suite SHA-256</th><th class="l">Command</th></tr></thead>
<tbody>{% for r in runs %}<tr><td class="r">{{ r.id }}</td><td class="l">{{ r.started }}</td><td class="l">{{ r.finished }}</td><td class="l">{{ r.status }}</td><td class="l">{{ r.sha }}</td><td class="l argv">{{ r.argv }}</td></tr>{% endfor %}</tbody>
</table></div>
{% endif %}
{% if suite_text %}
<h3>Suite as run: {{ suite_file }}</h3>
<p class="muted">SHA-256 {{ suite_sha }}</p>
<pre>{{ suite_text }}</pre>
{% endif %}
</section>
</main>
</body>
</html>
"""
