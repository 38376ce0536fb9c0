"""Corpus dummy: an NPU kernel source."""
