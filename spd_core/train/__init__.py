"""Training a decomposition: one step, the loop, schedules, seeding, progress, checkpoints, and
the runners (one rank: run.py; one process: single_process.py; several: parallel/)."""
