"""Judging a decomposition: the evaluation run at the end of training, its metrics, and figures."""
