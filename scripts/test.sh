#!/usr/bin/env bash
# Every test: the package's tests (pytest) and every notebook executed and checked (nbval).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -x -k tokenizers`.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
python -m pytest -q -p no:cacheprovider tests --nbval-lax notebooks "$@"
