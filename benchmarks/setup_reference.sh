#!/usr/bin/env bash
# An environment with the public reference implementation (goodfire-ai/spd) for
# `benchmarks/speed.py --reference-python VENV/bin/python`, which times its step beside ours, and
# `benchmarks/quality.py` / `benchmarks/lm_side_by_side.py`, which run its decompositions.
#
#   git clone https://github.com/goodfire-ai/spd ref-spd && git -C ref-spd checkout 3f0bb61e
#   bash benchmarks/setup_reference.sh ref-spd ref-venv [python3.13]
#
# The toy figures use main at 3f0bb61e; `lm_side_by_side.py` needs the `dev` branch (2ab728c0:
# global CI functions and persistent PGD): `git -C ref-spd checkout 2ab728c0` before or after
# (the checkout is installed editable, so switching it needs no reinstall).
#
# The reference needs Python 3.13. Only what its SPD loop imports is installed, not its app and
# cluster extras. On Linux `pip install torch==2.13.0` for 3.13 is the CUDA build (about 3 GB);
# it runs on a CPU-only machine too.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 REFERENCE_CHECKOUT VENV_DIR [PYTHON3.13]" >&2
  exit 2
fi
src=$1 venv=$2 python=${3:-python3.13}
[ -f "$src/spd/run_spd.py" ] || { echo "$src is not a checkout of goodfire-ai/spd" >&2; exit 2; }
"$python" -m venv "$venv"
"$venv/bin/pip" install torch==2.13.0 numpy "pydantic<2.12" jaxtyping einops "wandb<0.22" \
  wandb-workspaces==0.1.12 fire tqdm matplotlib python-dotenv transformers datasets scipy zstandard \
  orjson "aiolimiter>=1.2"
"$venv/bin/pip" install --no-deps -e "$src"
"$venv/bin/python" -c "import spd.run_spd" && echo "reference ready: $venv/bin/python"
