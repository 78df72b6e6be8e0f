"""Evaluation: running models on shared panels, the phase 3 tables, the predictor (phase 4),
selection (5)."""
