"""ft scale: scaling laws from a grid of cached pretraining runs (see finetune/scale/main.py)."""
