"""provisioner: declarative credit batches for Thought Industries."""

__version__ = "0.1.0"
