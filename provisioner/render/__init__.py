"""Turn a Plan into text (terminal), Markdown (pull-request comment) or JSON.

Pure functions: nothing here reads or writes anything. One module a plan:

    text.py       render_text, text_chunks, part_text: the Terraform-style plan for a terminal
    markdown.py   render_markdown, escape_markdown: the pull-request comment
    jsonplan.py   render_json, plan_to_json, JSON_FORMAT_VERSION: the document for tools (its format
                  is described there)
    common.py     what they share: the actions' words, the counts, credit usage as cells

The names are here too, each module imported only when one of its names is first asked for:
`provisioner validate` reaches the JSON plan (a saved plan's marker, planfile.py) and need not load
the text and Markdown plans.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# Each name this package gives, and the module that defines it.
_HOMES = {
    "render_text": "text",
    "text_chunks": "text",
    "part_text": "text",
    "render_markdown": "markdown",
    "escape_markdown": "markdown",
    "render_json": "jsonplan",
    "plan_to_json": "jsonplan",
    "JSON_FORMAT_VERSION": "jsonplan",
}

__all__ = sorted(_HOMES)

if TYPE_CHECKING:
    from provisioner.render.jsonplan import JSON_FORMAT_VERSION, plan_to_json, render_json
    from provisioner.render.markdown import escape_markdown, render_markdown
    from provisioner.render.text import part_text, render_text, text_chunks


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # asked once: later lookups find it without this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
