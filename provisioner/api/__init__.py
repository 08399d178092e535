"""Client of the Thought Industries credits API (its local simulator is provisioner.sandbox)."""
