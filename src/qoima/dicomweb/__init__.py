"""dicomweb layer."""
