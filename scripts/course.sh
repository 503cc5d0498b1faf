#!/usr/bin/env bash
# The course's main job: set up the environment, execute every chapter and appendix notebook top to bottom
# (QUICK mode unless PTFT_MODE=FULL), and build the book into book/_build/html. Offline.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
OUT="book/_build/executed"
mkdir -p "$OUT"
for nb in notebooks/[0-9]*.ipynb notebooks/[A-Z]_*.ipynb; do  # chapters, then appendices
  start=$(date +%s)
  echo ">> executing $nb ($PTFT_MODE)"
  jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=3600 \
    --output-dir "$OUT" "$nb" --log-level=WARN
  echo "   done in $(( $(date +%s) - start )) s"
done
# Sphinx renders the notebooks from $OUT as executed above (never again), and prints where the book is.
python book/build.py --executed "$OUT"
