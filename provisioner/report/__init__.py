"""The credits report behind `provisioner show`: the figures, then one renderer per format.

    report = model.build_report(state, observed, now)   # pure: no I/O, the clock passed in
    text.render_text(report)                             # the terminal
    export.render_json(report), export.render_csv(report)
    page.render_html(report)                             # one self-contained page, charts from charts.py
    formats.render(report, output_format)                # one of FORMATS

The HTML modules import pygal; they are imported only when a page is asked for, so that every
other command starts as fast as before.
"""

from __future__ import annotations

FORMATS = ("text", "json", "csv", "html")
# Batches expiring within this many days are listed (show --expiring-within); here, so that the
# CLI can show the default without importing the model.
DEFAULT_EXPIRING_WITHIN = 30
