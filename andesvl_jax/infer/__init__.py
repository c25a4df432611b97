"""Inference: the generation engine (prefill + decode in one jit, sampling, thinking modes, chat)."""
