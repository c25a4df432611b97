"""Whole jobs built from every layer: the embedded demo and its post-training sequel."""
