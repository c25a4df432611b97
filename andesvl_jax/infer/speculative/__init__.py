"""Speculative decoding: EAGLE draft heads (`models/eagle.py`) with EAGLE-2 dynamic draft trees,
verified in one target forward with a tree attention mask (docs/speculative.md)."""
