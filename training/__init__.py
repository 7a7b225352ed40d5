"""Training of the shipped chest radiograph triage model (needs the `train` extra: torch)."""
