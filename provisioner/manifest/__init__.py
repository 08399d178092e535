"""Reading: YAML manifests -> a validated ``Desired``.

The located reader (errors at file:line:column), the fast reader (yaml-rs) that must mean the same,
the values of each field, the YAML 1.1 rules, the field table, the grant grammar, the JSON Schema,
and the cache of each file's declarations. Imports only ``provisioner.core`` and itself: reading
manifests loads nothing of planning, applying, rendering, state, the API or the CLI.
"""
