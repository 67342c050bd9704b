"""Decomposition as a Ray Train job: the driver side (job.py) and the per-worker entry point."""
