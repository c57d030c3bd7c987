"""Catalog access, export and figures for ASSB runs (reads the catalog only)."""
