"""The credits report in the format asked for: each renderer imported only when its format is."""

from __future__ import annotations


def render(report, output_format: str) -> str:
    """The report in one of FORMATS."""
    if output_format == "html":
        from provisioner.report.page import render_html

        return render_html(report)
    from provisioner.report.export import render_csv, render_json
    from provisioner.report.text import render_text

    return {"text": render_text, "json": render_json, "csv": render_csv}[output_format](report)
