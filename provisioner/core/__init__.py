"""The values and rules every stage shares: models, timestamps, addresses, how two values of a field compare,
counted words, writing a file atomically, file marks, and how many models are built fast.

Imports nothing else of provisioner: every other package may import these modules.
"""
