"""Inference: decoding with the KV cache."""
