"""EffOPD's engine-agnostic core: configuration, trigger schedule, sharded extrapolation, search.

Imports neither verl nor ray.
"""
