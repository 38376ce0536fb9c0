"""Corpus dummy: an extra Python file."""
