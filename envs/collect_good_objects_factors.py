"""CollectGoodObjects as a factor dataset: frames of the environment rendered from chosen factors.

The disentanglement metrics and DC-IGN's factor sweeps need a finite grid of ground-truth factors
and a renderer (envs/factor_dataset.py). Here the factors are the environment's own:

    object_set  which object pair colours the boxes (hat/can, cake/balloon)
    room_style  wall and floor textures
    agent_x     agent position on a grid over the room's middle, agent_margin from the walls (m)
    agent_z
    agent_dir   heading, in whole multiples of the env's turn step (30° by default)
    layout      one of K fixed placements of the boxes (positions and yaws), drawn once from a seed

Every layout keeps each box clear of every agent grid position (no overlap of the agent's and the
box's collision discs, the rule Miniworld's own placement follows), so each grid point is a state
the environment itself can be in, and its frame is exactly the observation the env returns there.

The full grid holds DMLab's held-out pairing (hat_can in the alternative room), which metrics may
evaluate on; ``heldout_pairings`` names (object set, room style) pairs that training must never
see, and ``allowed(factors)`` says which grid points are free of them (darla's FactorBatches,
which feed DC-IGN its sweeps, only draw allowed points).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from envs.collect_good_objects import OBJECT_SET_NAMES, ROOM_STYLE_NAMES, CollectGoodObjects
from envs.factor_dataset import checked_factors, uniform_factors

# Tries at drawing one layout before concluding the agent grid leaves no room for the boxes.
_LAYOUT_RESTARTS = 200
_CANDIDATES_PER_RESTART = 1000


class CollectGoodObjectsFactors:
    """A finite factor grid over CollectGoodObjects scenes and the env's observation at each point.

    One environment is built per (object set, room style) the first time it is rendered and then
    reused. ``env_kwargs`` go to every environment unchanged (lighting, camera, room size, object
    counts, ...), so a domain's appearance is reproduced by passing its keyword arguments here,
    less the two that are factors.

    The default grid (2 x 5 x 3 x 3 x 12 x 4 = 4,320 frames) keeps the agent 1.5 m or more from the
    walls, in the middle 2 x 2 m of the 5 m room, with the boxes around it: objects are then in
    view in ~91% of frames. A margin of 0.5 m spreads the agent across the room but puts it face
    to a wall in half the frames (objects in view in ~53%), where object_set and layout cannot be
    seen at all. Denser agent grids leave no room for six 0.8 m boxes clear of every position
    (4 x 4 fits with agent_margin 1.6).
    """

    factor_names = ("object_set", "room_style", "agent_x", "agent_z", "agent_dir", "layout")

    def __init__(
        self,
        object_sets: Sequence[str] = tuple(OBJECT_SET_NAMES),
        room_styles: Sequence[str] = tuple(ROOM_STYLE_NAMES),
        num_x: int = 3,
        num_z: int = 3,
        num_headings: int = 12,
        num_layouts: int = 4,
        layout_seed: int = 0,
        agent_margin: float = 1.5,
        env_kwargs: Mapping[str, Any] | None = None,
        heldout_pairings: Sequence[Sequence[str]] = (),
    ):
        self.object_sets = _names("object_sets", object_sets, OBJECT_SET_NAMES)
        self.room_styles = _names("room_styles", room_styles, ROOM_STYLE_NAMES)
        for name, value in (
            ("num_x", num_x),
            ("num_z", num_z),
            ("num_headings", num_headings),
            ("num_layouts", num_layouts),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        self.env_kwargs = dict(env_kwargs or {})
        self.heldout_pairings = []
        for pair in heldout_pairings:
            if len(pair) != 2 or pair[0] not in OBJECT_SET_NAMES or pair[1] not in ROOM_STYLE_NAMES:
                raise ValueError(
                    f"heldout_pairings entries must be [object_set, room_style] with object_set in "
                    f"{list(OBJECT_SET_NAMES)} and room_style in {list(ROOM_STYLE_NAMES)}; got {pair!r}"
                )
            if pair[0] in self.object_sets and pair[1] in self.room_styles:
                self.heldout_pairings.append((self.object_sets.index(pair[0]), self.room_styles.index(pair[1])))
        factor_kwargs = sorted({"object_set", "room_style"} & set(self.env_kwargs))
        if factor_kwargs:
            raise ValueError(
                f"env_kwargs must not set {factor_kwargs}: they are factors of this dataset "
                "(choose them with object_sets / room_styles)"
            )
        self._envs: dict[tuple[int, int], CollectGoodObjects] = {}
        # The first environment is built now: it fails early on bad env_kwargs, and the room, box
        # and agent sizes and the turn step are read from it rather than restated here.
        env = self._env(0, 0)
        room_size, agent_radius = env.room_size, env.agent.radius
        box_radius = env.objects[0].radius if env.objects else 0.0
        turn_step = float(env.params.get_max("turn_step"))
        self.image_shape: tuple[int, int, int] = tuple(int(s) for s in env.observation_space.shape)

        if not agent_radius <= agent_margin <= room_size / 2:
            raise ValueError(
                f"agent_margin must lie between the agent's radius {agent_radius} m and half the "
                f"room ({room_size / 2} m), so every grid position is inside the room; got {agent_margin}"
            )
        heading_step = 360.0 / num_headings
        turns = heading_step / turn_step
        if abs(turns - round(turns)) > 1e-9 or round(turns) < 1:
            raise ValueError(
                f"num_headings={num_headings} gives {heading_step:g}° between headings; it must be a "
                f"whole multiple of the env's turn step {turn_step:g}°"
            )

        self.agent_x_values = np.linspace(agent_margin, room_size - agent_margin, num_x)
        self.agent_z_values = np.linspace(agent_margin, room_size - agent_margin, num_z)
        self.agent_dir_values = np.radians(heading_step * np.arange(num_headings))
        agent_grid = np.stack(np.meshgrid(self.agent_x_values, self.agent_z_values, indexing="ij"), -1).reshape(-1, 2)
        rng = np.random.default_rng(layout_seed)
        layouts = [
            _draw_layout(len(env.objects), room_size, box_radius, agent_grid, agent_radius, rng)
            for _ in range(num_layouts)
        ]
        self.layout_xz = np.stack([xz for xz, _ in layouts])  # (K, num_objects, 2) box centres (m)
        self.layout_dir = np.stack([yaw for _, yaw in layouts])  # (K, num_objects) box yaws (rad)

        self.factor_sizes = (
            len(self.object_sets),
            len(self.room_styles),
            int(num_x),
            int(num_z),
            int(num_headings),
            int(num_layouts),
        )

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n factor vectors drawn uniformly from the grid: int64 (n, 6)."""
        return uniform_factors(self.factor_sizes, n, rng)

    def allowed(self, factors: np.ndarray) -> np.ndarray:
        """Bool (n,): which factor vectors are free of the held-out pairings (may be used for training)."""
        factors = np.asarray(factors)
        ok = np.ones(len(factors), bool)
        for object_set, room_style in self.heldout_pairings:
            ok &= ~((factors[:, 0] == object_set) & (factors[:, 1] == room_style))
        return ok

    def factor_value_names(self, factor: int) -> tuple[str, ...]:
        """Names of the classes of factor column ``factor`` (labels; optional in the protocol)."""
        name = self.factor_names[factor]
        if name == "object_set":
            return self.object_sets
        if name == "room_style":
            return self.room_styles
        return tuple(f"{name}={i}" for i in range(self.factor_sizes[factor]))

    def render(self, factors: np.ndarray) -> np.ndarray:
        """The env's observation at each factor vector (n, 6): uint8 (n, H, W, 3)."""
        factors = checked_factors(factors, self.factor_names, self.factor_sizes)
        images = np.empty((len(factors), *self.image_shape), dtype=np.uint8)
        for i, (object_set, room_style, x, z, heading, layout) in enumerate(factors):
            images[i] = self._env(object_set, room_style).set_scene(
                (self.agent_x_values[x], self.agent_z_values[z]),
                self.agent_dir_values[heading],
                self.layout_xz[layout],
                self.layout_dir[layout],
            )
        return images

    def object_masks(self, factors: np.ndarray) -> np.ndarray:
        """Which pixels of ``render(factors)`` show a task object (good or bad): bool (n, H, W).
        Optional in the factor-dataset protocol; diagnostics measure reconstruction there."""
        masks = np.empty((len(factors), *self.image_shape[:2]), dtype=bool)
        for i, row in enumerate(np.asarray(factors)):
            self.render(row[None])  # checks the row and sets the scene
            object_set, room_style = int(row[0]), int(row[1])
            masks[i] = self._env(object_set, room_style).object_mask()
        return masks

    def close(self) -> None:
        """Release the environments' OpenGL resources."""
        for env in self._envs.values():
            env.close()
        self._envs.clear()

    def _env(self, object_set: int, room_style: int) -> CollectGoodObjects:
        key = (int(object_set), int(room_style))
        if key not in self._envs:
            self._envs[key] = CollectGoodObjects(
                object_set=self.object_sets[key[0]], room_style=self.room_styles[key[1]], **self.env_kwargs
            )
        return self._envs[key]


def _names(argument: str, values: Sequence[str], options: Sequence[str]) -> tuple[str, ...]:
    values = (values,) if isinstance(values, str) else tuple(values)
    unknown = [v for v in values if v not in options]
    if not values or unknown or len(set(values)) != len(values):
        raise ValueError(f"{argument} must be distinct names from {list(options)}; got {list(values)}")
    return values


def _draw_layout(
    num_objects: int,
    room_size: float,
    box_radius: float,
    agent_grid: np.ndarray,
    agent_radius: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Box centres (num_objects, 2) and yaws (num_objects,) that touch no wall, box or agent grid position.

    Boxes are dropped one at a time at uniform random points, skipping points that collide, as
    Miniworld's own placement does; a draw that runs out of candidates starts again.
    """
    for _ in range(_LAYOUT_RESTARTS):
        candidates = rng.uniform(box_radius, room_size - box_radius, size=(_CANDIDATES_PER_RESTART, 2))
        to_agents = np.linalg.norm(candidates[:, None, :] - agent_grid[None, :, :], axis=-1)
        candidates = candidates[to_agents.min(axis=1) >= agent_radius + box_radius]
        placed: list[np.ndarray] = []
        for point in candidates:
            if len(placed) == num_objects:
                break
            if all(np.linalg.norm(point - other) >= 2 * box_radius for other in placed):
                placed.append(point)
        if len(placed) == num_objects:
            return np.array(placed).reshape(num_objects, 2), rng.uniform(-math.pi, math.pi, num_objects)
    raise ValueError(
        f"no room for {num_objects} boxes of radius {box_radius:.2f} m clear of all {len(agent_grid)} "
        f"agent grid positions in a {room_size} m room; use fewer positions (num_x, num_z) or a "
        "larger agent_margin"
    )
