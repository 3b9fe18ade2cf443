"""Environments and domains for darla.

Registers the Gymnasium ids of the built-in environments; ``envs.domains`` turns a domain (an env
id plus keyword arguments plus optional appearance wrappers) into a ready environment.
A new environment is one module here, one ``register`` line below and one YAML in configs/env/.
"""

import gymnasium as gym

from envs import headless  # noqa: F401  (before anything can import miniworld)

COLLECT_GOOD_OBJECTS = "darla/CollectGoodObjects-v0"

if COLLECT_GOOD_OBJECTS not in gym.registry:
    gym.register(COLLECT_GOOD_OBJECTS, entry_point="envs.collect_good_objects:CollectGoodObjects")
