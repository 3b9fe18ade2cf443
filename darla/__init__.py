"""darla: zero-shot transfer in reinforcement learning through disentangled vision (DARLA).

Stages (``python -m darla.stage see|act|transfer|all``): see.py learns the vision, act.py trains
the agent on its frozen latents, transfer.py evaluates that agent on shifted domains.
"""

__version__ = "0.1.0"

import envs  # noqa: E402,F401  (registers darla's envs and switches Miniworld to headless rendering)
