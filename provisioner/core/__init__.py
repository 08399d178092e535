"""The values every stage shares: models, timestamps, file marks, how many models are built fast, and
the audit trail's events and their hash chain (audit_trail.py).

Imports nothing else of provisioner: every other package may import these modules.
"""
