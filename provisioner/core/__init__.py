"""The values and rules every stage shares: models, timestamps, addresses, how two values of a field compare,
counted words, writing a file atomically, file marks, how many models are built fast, and the audit
trail's events and their hash chain (audit_trail.py).

Imports nothing else of provisioner: every other package may import these modules.
"""
