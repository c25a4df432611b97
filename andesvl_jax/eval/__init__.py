"""Evaluation: metrics, benchmark readers and runners."""
