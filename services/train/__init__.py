"""Running a decomposition: as a Ray Train job (job.py on the driver, worker_entry.py on each
worker) or in this process (local_run.py), with checkpoints and resume (checkpoints.py)."""
