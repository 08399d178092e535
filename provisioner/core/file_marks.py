"""What marks a file as one of provisioner's own, so that one stage can recognise and refuse another's.

The manifest readers refuse a saved plan given where manifests are expected (with the advice to
apply it); the saved plan's format itself belongs to planning (provisioner.planning.saved_plan).
"""

from __future__ import annotations

SAVED_PLAN_MARKER = "provisioner_saved_plan"


def is_saved_plan_data(data: bytes) -> bool:
    """A JSON object carrying the saved plan's marker."""
    return data[:64].lstrip().startswith(b"{") and SAVED_PLAN_MARKER.encode() in data
