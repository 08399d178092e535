"""The report as one self-contained HTML page: opens from disk, needs no network, prints on A4.

Everything is inline (styles, SVG charts); the Content-Security-Policy forbids loading anything
and running any script, so a page that looks right here looks right anywhere. Accessible: real
headings, tables with captions and header cells, charts with text alternatives and their figures
in tables beside them, markers spelled out in words (never colour alone).
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from provisioner import __version__
from provisioner.core.plurals import plural
from provisioner.report import wording
from provisioner.report.charts import client_chart, expiry_chart
from provisioner.report.model import BatchLine, Credits, CreditsReport

POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

STYLE = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 62rem; padding: 1.5rem; color: #1a1a1a; background: #fff;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; }
h1 { font-size: 1.7rem; margin: 0 0 .25rem; }
h2 { font-size: 1.25rem; margin: 2rem 0 .6rem; border-bottom: 2px solid #1a1a1a; padding-bottom: .15rem; }
h3 { font-size: 1.05rem; margin: 1.2rem 0 .4rem; }
.source { margin: 0 0 1rem; font-size: 1rem; }
.totals { display: grid; grid-template-columns: repeat(auto-fit, minmax(9rem, 1fr)); gap: .6rem; margin: 0; }
.totals div { border: 1px solid #bbb; border-left: 6px solid var(--swatch, #1a1a1a); padding: .45rem .7rem; }
.totals dt { font-size: .85rem; }
.totals dd { margin: 0; font-size: 1.45rem; font-weight: 650; font-variant-numeric: tabular-nums; }
.warning { border-left: 6px solid #D55E00; background: #fff4ec; padding: .5rem .8rem; }
figure { margin: .5rem 0 1rem; }
figure svg { display: block; width: 100%; height: auto; }
figcaption { font-size: .9rem; color: #333; }
table { border-collapse: collapse; width: 100%; margin: .4rem 0 1rem; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 650; padding: .2rem 0; }
th, td { border-bottom: 1px solid #ccc; padding: .3rem .45rem; text-align: left; vertical-align: top;
  overflow-wrap: break-word; }
thead th { border-bottom: 2px solid #1a1a1a; }
.num { text-align: right; white-space: nowrap; }
tfoot th, tfoot td { border-top: 2px solid #1a1a1a; font-weight: 650; }
tr.soon { background: #fff4ec; }
.marker { font-weight: 650; color: #9a3600; }
footer { margin-top: 2rem; font-size: .85rem; color: #444; }
@page { size: A4; margin: 14mm 12mm; }
@media print {
  body { max-width: none; padding: 0; font-size: 9.5pt; }
  h2 { break-after: avoid; }
  figure, tr, .totals div { break-inside: avoid; }
  thead { display: table-header-group; }
  tr.soon { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""

SWATCHES = {"used": "#0072B2", "remaining": "#009E73", "expired_unused": "#D55E00", "unknown": "#8C8C8C"}


def render_html(report: CreditsReport) -> str:
    source = wording.figures_source(report)
    sections = [_totals(report)]
    if report.clients:
        sections += [_clients(report), _expiring(report)]
    if report.upcoming:
        sections.append(_upcoming(report))
    sections.append(_batches(report))
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{POLICY}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="provisioner {escape(__version__)}">
<link rel="icon" href="data:,">
<title>Credits report, {escape(report.generated_at.strftime("%Y-%m-%d"))}</title>
<style>{STYLE}</style>
</head>
<body>
<header>
<h1>Credits report</h1>
<p class="source">Figures {escape(source)}.</p>
</header>
<main>
{"".join(sections)}
</main>
<footer>
<p>Made by provisioner {escape(__version__)} at {escape(wording.moment(report.generated_at))}
(<code>provisioner show --format html</code>); charts drawn with pygal. This file needs no network: it can be
mailed, archived and printed as it is.</p>
</footer>
</body>
</html>
"""


def _totals(report: CreditsReport) -> str:
    totals = report.totals
    cards = [("issued", "Issued", totals.issued, "#1a1a1a")]
    cards += [
        (name, title.capitalize(), getattr(totals, name), SWATCHES[name]) for name, title in wording.CREDIT_COLUMNS[1:]
    ]
    if totals.unknown:
        cards.append(("unknown", "Unknown (missing from the API)", totals.unknown, SWATCHES["unknown"]))
    items = "".join(
        f'<div style="--swatch: {colour}"><dt>{escape(title)}</dt>'
        f'<dd data-total="{name}">{wording.credits(value)}</dd></div>'
        for name, title, value, colour in cards
    )
    counts = f"{plural(len(report.clients), 'client', 'clients')}, {plural(len(report.batches), 'batch', 'batches')}."
    return f"""
<section aria-labelledby="totals-heading">
<h2 id="totals-heading">Totals</h2>
<dl class="totals">{items}</dl>
<p>{counts}</p>
{_expiring_soon_note(report)}{_interrupted_note(report)}
</section>"""


def _expiring_soon_note(report: CreditsReport) -> str:
    soon = report.expiring_soon
    if not soon:
        return f"<p>No batch expires within {report.expiring_within} days.</p>"
    unused = sum(line.credits.remaining for line in soon)
    return (
        f'<p class="warning" data-expiring-soon="{len(soon)}"><strong>Expiring soon:</strong> '
        f"{plural(len(soon), 'batch expires', 'batches expire')} within {report.expiring_within} days, "
        f"with {wording.credits(unused)} credits unused (marked “expires soon” in the table of batches).</p>"
    )


def _interrupted_note(report: CreditsReport) -> str:
    if not report.interrupted:
        return ""
    addresses = ", ".join(escape(address) for address in report.interrupted)
    return (
        f"<p>An apply was interrupted while creating {addresses}: the next apply resolves it (never twice). "
        "Not counted here.</p>"
    )


def _clients(report: CreditsReport) -> str:
    columns = list(wording.CREDIT_COLUMNS) + ([("unknown", "unknown")] if report.totals.unknown else [])
    head = "".join(f'<th scope="col" class="num">{escape(title.capitalize())}</th>' for _, title in columns)
    rows = "".join(
        f'<tr><th scope="row">{escape(client.client)}</th>{_credit_cells(client.credits, columns)}'
        f'<td class="num">{len(client.batches):,}</td></tr>'
        for client in report.clients
    )
    return f"""
<section aria-labelledby="clients-heading">
<h2 id="clients-heading">Where each client’s credits went</h2>
<figure aria-describedby="clients-table">
{client_chart(report)}
<figcaption>Each bar is as long as the credits issued to the client, split into used, remaining and expired unused.
The figures are in the table below.</figcaption>
</figure>
<table id="clients-table">
<caption>Credits per client</caption>
<thead><tr><th scope="col">Client</th>{head}<th scope="col" class="num">Batches</th></tr></thead>
<tbody>{rows}</tbody>
<tfoot><tr><th scope="row">Total</th>{_credit_cells(report.totals, columns)}<td class="num">{len(report.batches):,}</td></tr></tfoot>
</table>
</section>"""


def _credit_cells(credits: Credits, columns) -> str:
    return "".join(f'<td class="num">{wording.credits(getattr(credits, name))}</td>' for name, _ in columns)


def _expiring(report: CreditsReport) -> str:
    rows = "".join(
        f'<tr><th scope="row">{month.month.strftime("%B %Y")}</th><td class="num">{wording.credits(month.credits)}</td>'
        f'<td class="num">{month.batches:,}</td></tr>'
        for month in report.expiring_by_month
    )
    return f"""
<section aria-labelledby="expiring-heading">
<h2 id="expiring-heading">Credits expiring per month</h2>
<figure aria-describedby="expiring-table">
{expiry_chart(report)}
<figcaption>Credits still unused in the batches whose last usable day falls in each of the next 12 months (lost unless used by then).
The figures are in the table below.</figcaption>
</figure>
<table id="expiring-table">
<caption>Unused credits by month of expiry</caption>
<thead><tr><th scope="col">Month</th><th scope="col" class="num">Credits unused</th><th scope="col" class="num">Batches</th></tr></thead>
<tbody>{rows}</tbody>
</table>
</section>"""


def _upcoming(report: CreditsReport) -> str:
    rows = "".join(
        f"<tr><td>{escape(grant.client)}</td><td>{escape(grant.grant)}</td><td>{escape(grant.period)}</td>"
        f'<td>{grant.on.isoformat()}</td><td class="num">{wording.credits(grant.credits)}</td></tr>'
        for grant in report.upcoming
    )
    total = sum(grant.credits for grant in report.upcoming)
    return f"""
<section aria-labelledby="upcoming-heading">
<h2 id="upcoming-heading">Upcoming grants</h2>
<table>
<caption>Batches the recurring grants will create in the next 12 months (each grant's next one at least), by the day their period starts</caption>
<thead><tr><th scope="col">Client</th><th scope="col">Grant</th><th scope="col">Period</th><th scope="col">Date</th><th scope="col" class="num">Credits</th></tr></thead>
<tbody>{rows}</tbody>
<tfoot><tr><th scope="row" colspan="4">Total</th><td class="num" data-total="upcoming">{wording.credits(total)}</td></tr></tfoot>
</table>
</section>"""


def _batches(report: CreditsReport) -> str:
    if not report.batches:
        return ""
    rows = "".join(_batch_row(line, report.expiring_within, report.issuers) for line in report.batches)
    return f"""
<section aria-labelledby="batches-heading">
<h2 id="batches-heading">Batches</h2>
<table>
<caption>Every batch recorded, by client (the last day each batch’s credits can be used, in UTC)</caption>
<thead><tr><th scope="col">Client</th><th scope="col">Batch</th><th scope="col">Name</th>
<th scope="col" class="num">Issued</th><th scope="col" class="num">Used</th><th scope="col" class="num">Remaining</th>
<th scope="col">Last day</th><th scope="col">Status</th>{'<th scope="col">Issued by</th>' if report.issuers else ""}</tr></thead>
<tbody>{rows}</tbody>
</table>
</section>"""


def _batch_row(line: BatchLine, expiring_within: int, issuers: Mapping[str, Mapping]) -> str:
    remaining = "?" if line.credits.unknown else wording.credits(line.credits.remaining)
    if line.expiring_soon:
        status = f'<span class="marker">⚠ expires soon</span><br>{escape(line.status)}'
    else:
        status = escape(wording.status(line, expiring_within))
    return (
        f"<tr{' class=soon' if line.expiring_soon else ''}><td>{escape(line.client)}</td>"
        f"<td>{escape(line.batch)}</td><td>{escape(line.name)}</td>"
        f'<td class="num">{wording.credits(line.credits.issued)}</td><td class="num">{escape(wording.used(line))}</td>'
        f'<td class="num">{remaining}</td><td>{escape(wording.expiry(line))}</td><td>{status}</td>'
        + (_issuer_cell(issuers.get(line.address)) if issuers else "")
        + "</tr>"
    )


def _issuer_cell(event: Mapping | None) -> str:
    """Who brought the batch under management, how (created, imported...), and a link to the run."""
    if event is None:
        return "<td>not in the history</td>"
    details = [f"{event.get('action')} at {event.get('at')}"]
    details += [f"{name} {event[name]}" for name in ("commit", "review", "reason") if event.get(name)]
    cell = f'<span title="{escape("; ".join(details))}">{escape(str(event.get("actor", "unknown")))}</span>'
    url = str(event.get("run_url", ""))
    if url.startswith(("https://", "http://")):
        cell += f' <a href="{escape(url)}">run</a>'
    return f"<td>{cell}</td>"
