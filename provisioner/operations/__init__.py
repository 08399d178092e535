"""The use cases, between the CLI and the stages: connecting to the API, plan, apply, show, state edits,
and generating manifests from an instance's batches (generate.py).

Each takes plain values and returns results; ``provisioner.cli`` only parses options, calls one of
these and prints. May import every stage; nothing but the CLI imports it.
"""
