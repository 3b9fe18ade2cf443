"""Domains: named environment settings, and environments built from them.

A domain is data: a Gymnasium id, the keyword arguments that set its appearance and task, and
optional appearance shifts (envs/shifts.py) wrapped around the env in order, each by its name in
configs/shift/ (``shifts``: name -> the class its ``_target_`` names). In an env config's
table of domains, the reserved key ``wrappers`` holds the shifts and every other key is an env
keyword; an env config's own ``wrappers`` apply to all its domains, before their own.
An experiment lists which domains the vision stage collects from, which the policy trains on
(source) and which it is evaluated on zero-shot (targets).
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import parse_env_id

from envs import headless  # noqa: F401
from envs.shifts import apply_shifts

WRAPPERS = "wrappers"  # the reserved key of a domain's table entry that holds its shifts


@dataclass(frozen=True)
class Domain:
    """A named env setting: ``gym.make(env_id, **kwargs)`` wrapped in ``wrappers`` (shift name -> kwargs),
    each shift built from the class ``shifts`` names for it (``module.Class``)."""

    name: str
    env_id: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    wrappers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    shifts: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self):
        unknown = [w for w in self.wrappers if w not in self.shifts]
        if unknown:
            raise ValueError(
                f"domain {self.name!r}: unknown shift {unknown[0]!r} under {WRAPPERS}; known shifts: "
                f"{sorted(self.shifts)} (one YAML each in configs/shift/, selected with shift=[...])"
            )

    def make(self) -> gym.Env:
        env_id = registered_id(self.env_id, self.name)
        try:
            env = gym.make(env_id, disable_env_checker=True, **dict(self.kwargs))
        except gym.error.Error as err:
            raise ValueError(f"domain {self.name!r}: cannot make env {self.env_id!r}: {err}") from err
        except TypeError as err:
            raise ValueError(f"domain {self.name!r}: bad keyword for {self.env_id!r}: {err}") from err
        try:
            return apply_shifts(env, self.wrappers, self.shifts)
        except ValueError as err:
            env.close()
            raise ValueError(f"domain {self.name!r} ({self.env_id}): {err}") from err


def registered_id(env_id: str, domain: str = "?") -> str:
    """``env_id`` as Gymnasium can make it in any process.

    An id that is not registered yet (``MiniWorld-OneRoomS6-v0``) is looked for in the installed
    package its prefix names (``miniworld``), which registers it on import; it is then made as
    ``miniworld:MiniWorld-OneRoomS6-v0``, so that every worker process imports that package too.
    """
    if ":" in env_id or env_id in gym.registry:
        return env_id
    namespace, name, _ = parse_env_id(env_id)
    package = (namespace or name).split("-")[0].split("/")[0].lower()
    if package and importlib.util.find_spec(package) is not None:
        importlib.import_module(package)
        if env_id in gym.registry:
            return f"{package}:{env_id}"
    raise ValueError(
        f"domain {domain!r}: env id {env_id!r} is not registered with Gymnasium"
        + (
            f" (the installed package {package!r} does not register it)"
            if package and importlib.util.find_spec(package)
            else ""
        )
        + f". If a package of yours registers it when imported, write env.id=<package>:{env_id} "
        f"(for example env.id=my_envs:{env_id} for my_envs.py on PYTHONPATH)"
    )


def domains_from_config(
    env_id: str,
    common: Mapping[str, Any],
    table: Mapping[str, Mapping[str, Any]],
    names: Sequence[str],
    role: str,
    common_wrappers: Mapping[str, Mapping[str, Any]] | None = None,
    shifts: Mapping[str, str] | None = None,
) -> list[Domain]:
    """Look up ``names`` in the domain table.

    Each domain's kwargs are laid over ``common``; its ``wrappers`` follow ``common_wrappers``
    (a shift both name takes the domain's arguments, in the common shift's place). ``shifts`` maps
    the shift names wrappers may use to their classes (configs/shift/).
    """
    missing = [n for n in names if n not in table]
    if missing:
        raise ValueError(f"{role} domains {missing} are not defined; defined domains: {sorted(table)}")
    domains = []
    for name in names:
        entry = dict(table[name] or {})
        wrappers = {**dict(common_wrappers or {}), **dict(entry.pop(WRAPPERS, None) or {})}
        domains.append(Domain(name, env_id, {**dict(common), **entry}, wrappers, dict(shifts or {})))
    return domains


class DomainMixture(gym.Env):
    """One environment over several domains: each episode plays one of them.

    By default every reset draws a domain uniformly at random, so a few vector-env workers see
    all source domains in equal measure; ``weights`` (name -> relative weight, 1 for a name it
    leaves out) draws some more often. ``reset(options={"domain": name})`` pins the mixture to
    one domain for this and later resets (evaluation); ``{"domain": None}`` unpins it. Each
    domain's environment is built the first time it is played and then kept.
    ``info["domain"]`` names the domain in play.
    """

    def __init__(self, domains: Sequence[Domain], weights: Mapping[str, float] | None = None):
        if not domains:
            raise ValueError("DomainMixture needs at least one domain")
        self.domains = {d.name: d for d in domains}
        self.names = list(self.domains)
        unknown = sorted(set(weights or {}) - set(self.names))
        if unknown:
            raise ValueError(f"domain weights name {unknown}, which are not in this mixture; it holds {self.names}")
        p = np.array([float((weights or {}).get(name, 1.0)) for name in self.names])
        self.p = p / p.sum() if weights else None  # None: uniform, drawn as before weights existed
        self.envs: dict[str, gym.Env] = {}
        first = self._env(self.names[0])
        self.observation_space, self.action_space = first.observation_space, first.action_space
        self.metadata, self.render_mode = first.metadata, first.render_mode
        self.active = self.names[0]
        self.pinned: str | None = None

    def _env(self, name: str) -> gym.Env:
        if name not in self.envs:
            env = self.domains[name].make()
            if self.envs and (env.observation_space != self.observation_space or env.action_space != self.action_space):
                raise ValueError(
                    f"domain {name!r} has spaces {env.observation_space}, {env.action_space}; "
                    f"domain {self.names[0]!r} has {self.observation_space}, {self.action_space}"
                )
            self.envs[name] = env
        return self.envs[name]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        if "domain" in options:
            name = options.pop("domain")
            if name is not None and name not in self.domains:
                raise ValueError(f"domain {name!r} is not in this mixture; it holds {self.names}")
            self.pinned = name
        if self.pinned:
            self.active = self.pinned
        elif self.p is None:
            self.active = self.names[int(self.np_random.integers(len(self.names)))]
        else:
            self.active = self.names[int(self.np_random.choice(len(self.names), p=self.p))]
        # Derive the domain's own seed from ours so a seeded mixture replays exactly.
        obs, info = self._env(self.active).reset(seed=int(self.np_random.integers(2**31)), options=options or None)
        return obs, {**info, "domain": self.active}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.envs[self.active].step(action)
        return obs, reward, terminated, truncated, {**info, "domain": self.active}

    def render(self):
        return self.envs[self.active].render()

    def close(self):
        for env in self.envs.values():
            env.close()


def stack_factors(factors: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Stack per-frame ground-truth factor dicts into arrays (one row per frame)."""
    return {key: np.stack([np.asarray(f[key]) for f in factors]) for key in factors[0]}
