"""Applying: executes a Plan exactly once per batch through the API, recording each result at once.

The applier, settling the intents a crash left open, the per-run listings, the rules that match a
listed batch to a create (matching.py), refresh, and the tally of what a run did. Imports
``provisioner.core``, ``provisioner.planning``, ``provisioner.backends`` (through its interface),
``provisioner.api`` and ``provisioner.render.progress``.
"""
