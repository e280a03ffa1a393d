"""Promotion policy, apart from the registry mechanics that carry out its decisions."""
