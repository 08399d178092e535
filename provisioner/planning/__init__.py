"""Planning, pure: Desired x Recorded (x Observed) -> Plan.

The diff, the guardrails, the warnings, grant periods, the plan as a JSON document, saved plans
and the plan memo. No I/O beyond the saved plan's and the plan memo's own files; the clock is
passed in. Imports ``provisioner.core`` and ``provisioner.manifest``.
"""
