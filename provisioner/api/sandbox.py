"""The sandbox moved to `provisioner.sandbox`; this name stays for code written against the old one."""

from provisioner.sandbox import Faults, Quirks, Sandbox

__all__ = ["Faults", "Quirks", "Sandbox"]
