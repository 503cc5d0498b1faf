"""The chapters' experiment harnesses, built on the public API only.

- ``label_budget``: scratch vs pre-trained at 40 / 200 / 1,000 / 4,000 labels (chapter 1).
- ``single_vs_multi``: one model per task vs one multi-task model on the same rows (chapter 4).
- ``scaling_grid``: models x data sizes, power-law fits (chapter 5).
- ``recipe``: MLM recipes at a fixed budget vs the unigram plateau, then 200-label fine-tuning
  against scratch (chapter 3, ``scripts/recipe_sweep.py``).
- ``sensors``: masked-reconstruction pre-training vs scratch with few fault labels (chapter 5).
"""
