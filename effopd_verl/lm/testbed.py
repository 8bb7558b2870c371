"""The real LM as a benchmark testbed: SmolLM2-135M-Instruct assets from ``scripts/build_lm_assets.py``,
trained with the ``smollm2_cpu`` config, scored in process with the model's own chat template.

    python scripts/bench_speedup.py --testbed smollm2 --assets runs/lm_add1 --task add1 ...

Scoring a checkpoint (greedy answers and a teacher-forced pass over the split, 134.5M parameters) takes
seconds per split on two cores, so the testbed scores with two torch threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from effopd_verl.bench.toy_testbed import ToyScorer
from effopd_verl.lm.build import LMAssets
from effopd_verl.lm.chat import ChatEncoder
from effopd_verl.toy.build import load_assets


@dataclass(frozen=True)
class LMTestbed:
    name: str = "smollm2"
    config_name: str = "smollm2_cpu"

    def load_assets(self, path: str | Path) -> LMAssets:
        return load_assets(path, LMAssets)

    def scorer(self, assets: LMAssets, split_file: str) -> ToyScorer:
        return ToyScorer(assets, split_file, encoder=ChatEncoder, threads=2)


SMOLLM2 = LMTestbed()
