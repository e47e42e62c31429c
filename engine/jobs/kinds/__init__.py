"""One module per job kind (or family of kinds)."""
