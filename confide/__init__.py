"""Confide: the sans-I/O core (wire models, errors, settings, auth, entities, store)."""

__version__ = "0.1.0"
