#!/usr/bin/env bash
# Every test: the package's tests (pytest) and every notebook executed and checked (nbval).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -x -k tokenizers`.
# Two worker processes (pytest-xdist); --dist loadfile keeps each test file, and each notebook's
# cells, in one worker, in order. PTFT_TEST_WORKERS=0 runs everything in this process.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
WORKERS="${PTFT_TEST_WORKERS:-2}"
PARALLEL=()
if [ "$WORKERS" != "0" ]; then PARALLEL=(-n "$WORKERS" --dist loadfile); fi
python -m pytest -q -p no:cacheprovider "${PARALLEL[@]}" tests --nbval-lax notebooks "$@"
