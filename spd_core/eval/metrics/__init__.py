"""Evaluation metrics of a decomposition."""
