"""Readers, writers and storage access."""
