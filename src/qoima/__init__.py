"""Qoima: a medical imaging archive with built-in AI triage."""
