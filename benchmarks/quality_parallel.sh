#!/usr/bin/env bash
# Run benchmarks/quality.py for several PRESET:SEED pairs at once, one process each, on one device.
#   benchmarks/quality_parallel.sh LOG_DIR DEVICE TIMEOUT_S PRESET:SEED...
# Each run writes LOG_DIR/<preset>-s<seed>.jsonl (its JSON lines) and .err (its stderr).
set -u
log_dir=$1 device=$2 limit=$3
shift 3
mkdir -p "$log_dir"
for run in "$@"; do
  preset=${run%%:*} seed=${run##*:}
  timeout "$limit" python "$(dirname "$0")/quality.py" "$preset" --seeds "$seed" --device "$device" \
    --threads 2 >"$log_dir/$preset-s$seed.jsonl" 2>"$log_dir/$preset-s$seed.err" &
done
wait
grep -h '"check/all"\|wall_time' "$log_dir"/*.jsonl
