"""The values every stage shares: models, timestamps, file marks, and how many models are built fast.

Imports nothing else of provisioner: every other package may import these modules.
"""
