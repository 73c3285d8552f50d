"""Data: schemas, loaders and the built-in demo corpora (written by us)."""
