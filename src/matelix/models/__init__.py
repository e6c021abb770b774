"""Getting models into the lab: GGUF import and the real demo model shipped by a PyPI package."""
