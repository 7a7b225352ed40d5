"""ai/models layer."""
