"""Corpus dummy: a Triton kernel source."""
