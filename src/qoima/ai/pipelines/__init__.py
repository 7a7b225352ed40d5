"""ai/pipelines layer."""
