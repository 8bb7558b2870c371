"""effopd-verl: EffOPD (extrapolated on-policy distillation) as a plugin for verl 0.9.1.

Layers, one way: verl's trainer → :mod:`effopd_verl.integration` → :mod:`effopd_verl.core`
(pure torch). :mod:`effopd_verl.cpu` is an embedded CPU backend for verl, active only when a run
asks for ``trainer.device=cpu``.
"""

__version__ = "0.1.0"
