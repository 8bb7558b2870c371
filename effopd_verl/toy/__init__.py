"""Toy tasks for running verl's on-policy distillation offline: tasks with exact-match answers,
a char-level tokenizer, verl RL-format parquet files, the reward function, and a tiny Qwen3
teacher and student trained locally (no downloads).

Entry point: :func:`effopd_verl.toy.build.build_assets` (CLI: ``scripts/build_toy_assets.py``).
One job per module: :mod:`.tasks` (the problems), :mod:`.tokenizer`, :mod:`.data` (parquet),
:mod:`.reward` (what verl calls), :mod:`.model` (the Qwen3 config), :mod:`.train` (supervised
training and greedy evaluation), :mod:`.build` (the whole pipeline, cached).
"""
