"""The report's charts: static SVG drawn by pygal, made to sit inside a self-contained page.

pygal adds a script to every chart (for its tooltips): it is removed, so that the page runs no
code and its Content-Security-Policy can forbid scripts. Its comments go too (links to its site;
the page's footer names pygal instead). Each chart gets a <title> and a <desc>
(what it shows, in words) and role="img", so that a screen reader announces it as one picture.
"""

from __future__ import annotations

from collections.abc import Callable

import pygal
from pygal.style import Style

from provisioner.report.model import ClientLine, Credits, CreditsReport

# Okabe-Ito colours: told apart with every common colour-vision deficiency.
COLOURS = {"used": "#0072B2", "remaining": "#009E73", "expired_unused": "#D55E00", "unknown": "#8C8C8C"}
SERIES = (("used", "used"), ("remaining", "remaining"), ("expired_unused", "expired unused"), ("unknown", "unknown"))
MOST_CLIENTS_DRAWN = 15
FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif'


def _style(colours: tuple[str, ...]) -> Style:
    return Style(
        background="white",
        plot_background="white",
        foreground="#1a1a1a",
        foreground_strong="#1a1a1a",
        foreground_subtle="#d0d0d0",
        font_family=FONT,
        label_font_size=13,
        major_label_font_size=13,
        legend_font_size=13,
        value_font_size=12,
        tooltip_font_size=12,
        colors=colours,
        opacity="1",
        opacity_hover="1",
        transition="0s",
    )


def client_chart(report: CreditsReport) -> str:
    """Where each client's credits went: one bar per client, as long as the credits it was issued."""
    rows = _largest_clients(report.clients)
    series = [(name, title) for name, title in SERIES if name != "unknown" or report.totals.unknown]
    chart = pygal.HorizontalStackedBar(
        style=_style(tuple(COLOURS[name] for name, _ in series)),
        width=820,
        height=120 + 34 * len(rows),
        legend_at_bottom=True,
        legend_at_bottom_columns=len(series),
        show_y_guides=False,
        value_formatter=_whole,
        truncate_label=-1,
        **_static(),
    )
    drawn = rows[::-1]  # pygal draws the first label at the bottom: the largest client goes on top
    chart.x_labels = [label for label, _ in drawn]
    for name, title in series:
        chart.add(title, [getattr(credits, name) for _, credits in drawn])
    described = "; ".join(
        f"{label}: {_whole(c.issued)} issued, {_whole(c.used)} used, {_whole(c.remaining)} remaining, "
        f"{_whole(c.expired_unused)} expired unused"
        for label, c in rows
    )
    return _render(chart, "Credits issued per client, split into used, remaining and expired unused", described)


def expiry_chart(report: CreditsReport) -> str:
    """Credits still unused in the batches expiring in each of the next 12 months."""
    months = report.expiring_by_month
    chart = pygal.Bar(
        style=_style((COLOURS["expired_unused"],)),
        width=820,
        height=340,
        show_legend=False,
        value_formatter=_whole,
        truncate_label=-1,
        **_static(),
    )
    # Twelve short labels fit side by side; the years go in the axis title.
    chart.x_labels = [month.month.strftime("%b") for month in months]
    chart.x_title = f"{months[0].month:%B %Y} to {months[-1].month:%B %Y}"
    chart.add("credits expiring", [month.credits for month in months])
    described = "; ".join(f"{month.month.strftime('%B %Y')}: {_whole(month.credits)}" for month in months)
    return _render(chart, "Unused credits expiring per month over the next 12 months", described)


def _largest_clients(clients: tuple[ClientLine, ...]) -> list[tuple[str, Credits]]:
    """The clients with the most credits, and the others together, so the chart stays readable."""
    ranked = sorted(clients, key=lambda client: (-client.credits.issued, client.client))
    rows = [(client.client, client.credits) for client in ranked[:MOST_CLIENTS_DRAWN]]
    others = ranked[MOST_CLIENTS_DRAWN:]
    if others:
        total = Credits()
        for client in others:
            total = total + client.credits
        rows.append((f"{len(others):,} other clients", total))
    return rows


def _static() -> dict:
    return {"js": [], "disable_xml_declaration": True, "interpolate": None, "tooltip_border_radius": 0}


def _whole(value) -> str:
    return "" if value is None else f"{value:,.0f}"


def _render(chart: pygal.graph.graph.Graph, title: str, description: str) -> str:
    chart.add_xml_filter(_accessible(title, description))
    return chart.render(is_unicode=True)


def _accessible(title: str, description: str) -> Callable:
    def apply(root):
        for parent in list(root.iter()):
            for child in list(parent):
                if not isinstance(child.tag, str) or child.tag.rsplit("}", 1)[-1] == "script":
                    parent.remove(child)  # scripts, and comments (pygal's links: the page credits it)
        chart_id = root.get("id", "chart")
        # makeelement: pygal builds its tree with lxml when that is installed, else with ElementTree.
        title_node = root.makeelement("title", {"id": f"{chart_id}-title"})
        title_node.text = title
        desc_node = root.makeelement("desc", {"id": f"{chart_id}-desc"})
        desc_node.text = description
        root.insert(0, desc_node)
        root.insert(0, title_node)
        root.set("role", "img")
        root.set("aria-labelledby", f"{chart_id}-title")
        root.set("aria-describedby", f"{chart_id}-desc")
        return root

    return apply
