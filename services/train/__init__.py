"""Running a decomposition as a Ray Train job (job.py on the driver, worker_entry.py on each
worker), with the checks of its checkpoints (checkpoints.py); `--no-ray` runs
`spd_core.train.single_process.decompose` instead."""
