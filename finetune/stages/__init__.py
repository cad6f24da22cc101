"""The stages a recipe runs, in order: pretrain, finetune, evaluate (report is finetune/report.py)."""
