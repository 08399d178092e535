"""Client and local simulator of the Thought Industries credits API."""
