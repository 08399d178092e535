"""The use cases, between the CLI and the stages: connecting to the API, plan, apply, show, state edits.

Each takes plain values and returns results; ``provisioner.cli`` only parses options, calls one of
these and prints. May import every stage; nothing but the CLI imports it.
"""
