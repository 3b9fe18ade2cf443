"""CollectGoodObjects: a Miniworld room after DMLab-30's rooms_collect_good_objects.

The agent walks into coloured boxes: good ones give +1, bad ones −1, and each disappears when
touched. Which colour is good depends on the object set (hat/can or cake/balloon, DARLA's
pairings); the room's wall and floor textures are the room style. The episode ends when every
good object is collected or at the step limit.

Every appearance factor is a constructor argument with a fixed value (no Miniworld
``domain_rand``, which would also randomise dynamics every step), so a domain is simply a set of
keyword arguments and two domains differ exactly in the arguments they name.

Sizes follow what PPO on 64×64 pixels was measured to learn: an 8×8 m room with 4 + 4 boxes of
0.5 m, forward 0.15 m, turn 15° and 300 steps gave no learning in 300k steps (source 0.07, random
0.07); a 5×5 m room, 3 good + 3 bad boxes of 0.8 m, forward 0.4 m, turn 30°, 150 steps was learned
in ~150k steps (source 1.73-1.87 of 3, random 0.5-0.6).
"""

from __future__ import annotations

import contextlib
import io
import math
from typing import Any, Sequence

import numpy as np
from gymnasium import spaces, utils
from miniworld.entity import Box
from miniworld.miniworld import MiniWorldEnv
from miniworld.params import DEFAULT_PARAMS

from envs import headless  # noqa: F401  (must run before miniworld is imported)

# DMLab-30's objects, each a fixed colour (RGB 0-255); in each set the first is bad, the second good.
OBJECT_SETS: dict[str, dict[str, tuple[int, int, int]]] = {
    "hat_can": {"bad": (58, 31, 255), "good": (241, 255, 30)},  # hat −1, can +1
    "cake_balloon": {"bad": (36, 255, 174), "good": (255, 12, 154)},  # cake −1, balloon +1
}

# Room styles: (wall texture, floor texture) from Miniworld's texture set.
ROOM_STYLES: dict[str, tuple[str, str]] = {
    "default": ("brick_wall", "asphalt"),
    "alternative": ("wood", "concrete_tiles"),
    # Styles reserved for target domains (walls/floors neither training pairing uses).
    "concrete": ("concrete", "floor_tiles_bw"),
    "cinder": ("cinder_blocks", "grass"),
    "stucco": ("stucco", "wood_planks"),
}

# Factor vocabularies as integer codes, so frames and metrics can store them as arrays.
OBJECT_SET_NAMES = list(OBJECT_SETS)
ROOM_STYLE_NAMES = list(ROOM_STYLES)
GOOD, BAD, DISTRACTOR = 1, -1, 0


class ColouredBox(Box):
    """A Box with an exact RGB colour (Miniworld's Box only knows its named palette)."""

    def __init__(self, rgb: Sequence[float], kind: int, size: float):
        super().__init__(color="grey", size=size)
        self.rgb = np.asarray(rgb, dtype=np.float64) / 255.0
        self.kind = kind

    def randomize(self, params, rng):
        self.color_vec = self.rgb


def _choice(name: str, value: str, options: Sequence[str]) -> str:
    if value not in options:
        raise ValueError(f"CollectGoodObjects: unknown {name} {value!r}; expected one of {list(options)}")
    return value


class CollectGoodObjects(MiniWorldEnv, utils.EzPickle):
    """Collect the good objects, avoid the bad ones.

    Actions: 0 turn left, 1 turn right, 2 move forward. Walking into an object collects it.
    Observation: an RGB frame (obs_height, obs_width, 3) uint8.
    ``info["factors"]`` carries the ground truth: object set, room style, agent pose, and for
    every object its position, kind (+1 good, −1 bad, 0 distractor) and whether it was collected.
    ``info["state"]`` is the task state as one vector (``state_space``), what the oracle baseline
    reads instead of pixels: see ``task_state``.
    """

    def __init__(
        self,
        object_set: str = "hat_can",
        room_style: str = "default",
        room_size: float = 5.0,
        num_good: int = 3,
        num_bad: int = 3,
        object_size: float = 0.8,
        num_distractors: int = 0,
        distractor_rgb: Sequence[int] = (128, 128, 128),
        max_episode_steps: int = 150,
        forward_step: float = 0.4,
        turn_step: float = 30.0,
        light_intensity: float = 1.0,
        light_rgb: Sequence[float] = (1.0, 1.0, 1.0),
        sky_rgb: Sequence[float] = (0.25, 0.82, 1.0),
        cam_height: float = 1.5,
        cam_pitch: float = 0.0,
        cam_fov_y: float = 60.0,
        obs_width: int = 64,
        obs_height: int = 64,
        render_mode: str | None = None,
    ):
        self.object_set = _choice("object_set", object_set, OBJECT_SET_NAMES)
        self.room_style = _choice("room_style", room_style, ROOM_STYLE_NAMES)
        self.room_size = float(room_size)
        self.num_good, self.num_bad = int(num_good), int(num_bad)
        self.object_size = float(object_size)
        self.num_distractors = int(num_distractors)
        self.distractor_rgb = tuple(distractor_rgb)

        # Every appearance and dynamics parameter fixed at its domain value: no randomisation.
        params = DEFAULT_PARAMS.no_random()
        base_light = np.array(DEFAULT_PARAMS.params["light_color"].default)
        base_ambient = np.array(DEFAULT_PARAMS.params["light_ambient"].default)
        tint = np.asarray(light_rgb, dtype=float)
        params.set("light_color", list(np.clip(base_light * light_intensity * tint, 0, 1)))
        params.set("light_ambient", list(np.clip(base_ambient * light_intensity * tint, 0, 1)))
        params.set("sky_color", list(np.asarray(sky_rgb, dtype=float)))
        params.set("forward_step", float(forward_step))
        params.set("turn_step", float(turn_step))
        params.set("cam_height", float(cam_height))
        params.set("cam_pitch", float(cam_pitch))
        params.set("cam_fov_y", float(cam_fov_y))

        # Miniworld prints a line per frame buffer when the GL driver offers fewer multisamples than
        # it asks for (Mesa's llvmpipe); across workers and domains that is dozens of lines of noise.
        with contextlib.redirect_stdout(io.StringIO()):
            MiniWorldEnv.__init__(
                self,
                max_episode_steps=max_episode_steps,
                obs_width=obs_width,
                obs_height=obs_height,
                # The human-view frame buffer (800x600, 16 samples) costs ~30 MB per env; only
                # allocate it full size when something will render.
                window_width=800 if render_mode else 64,
                window_height=600 if render_mode else 64,
                params=params,
                domain_rand=False,
                render_mode=render_mode,
            )
        utils.EzPickle.__init__(
            self,
            object_set,
            room_style,
            room_size,
            num_good,
            num_bad,
            object_size,
            num_distractors,
            distractor_rgb,
            max_episode_steps,
            forward_step,
            turn_step,
            light_intensity,
            light_rgb,
            sky_rgb,
            cam_height,
            cam_pitch,
            cam_fov_y,
            obs_width,
            obs_height,
            render_mode,
        )
        self.action_space = spaces.Discrete(3)  # turn left, turn right, move forward
        state_size = 5 + 4 * (self.num_good + self.num_bad)
        self.state_space = spaces.Box(-np.inf, np.inf, shape=(state_size,), dtype=np.float32)

    # -- world --------------------------------------------------------------------------------

    def _gen_world(self):
        wall, floor = ROOM_STYLES[self.room_style]
        self.add_rect_room(0, self.room_size, 0, self.room_size, wall_tex=wall, floor_tex=floor, no_ceiling=True)
        colours = OBJECT_SETS[self.object_set]
        for kind in [GOOD] * self.num_good + [BAD] * self.num_bad:
            self.place_entity(ColouredBox(colours["good" if kind == GOOD else "bad"], kind, self.object_size))
        # The agent is placed before any distractor, so a domain that adds distractors keeps the
        # objects and agent pose of the same seed without them (domains differ only in what they name).
        self.place_agent()
        for _ in range(self.num_distractors):
            self._place_if_room(ColouredBox(self.distractor_rgb, DISTRACTOR, self.object_size))
        self.objects: list[ColouredBox] = [e for e in self.entities if e is not self.agent]
        self.collected = np.zeros(len(self.objects), dtype=bool)

    def _place_if_room(self, entity: Box, max_tries: int = 2_000) -> bool:
        """Place ``entity`` where it touches nothing, as Miniworld's place_entity does, but give up
        after ``max_tries`` positions instead of looping forever.

        Boxes dropped one by one can leave no free spot in a small room (it happened to a distractor
        with 6 objects and the agent in the 5 m room, hanging a worker). The random draws are the
        same as place_entity's, so every layout that fits is exactly the one place_entity makes.
        """
        rooms = list(self.rooms)
        for _ in range(max_tries):
            room = rooms[self.np_random.choice(len(rooms), p=self.room_probs)]
            pos = self.np_random.uniform(
                low=[room.min_x - entity.radius, 0, room.min_z - entity.radius],
                high=[room.max_x + entity.radius, 0, room.max_z + entity.radius],
            )
            if not room.point_inside(pos) or self.intersect(entity, pos, entity.radius):
                continue
            entity.pos, entity.dir = pos, self.np_random.uniform(-math.pi, math.pi)
            self.entities.append(entity)
            return True
        return False

    def _collect_ahead(self) -> float:
        """Collect every good or bad object the forward move would bump into; return the reward."""
        next_pos = self.agent.pos + self.agent.dir_vec * self.params.get_max("forward_step")
        reward = 0.0
        for i, obj in enumerate(self.objects):
            if self.collected[i] or obj.kind == DISTRACTOR:
                continue
            if np.linalg.norm((obj.pos - next_pos)[[0, 2]]) < self.agent.radius + obj.radius:
                self.collected[i] = True
                self.entities.remove(obj)
                reward += obj.kind
        return reward

    # -- gymnasium API ------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, _ = super().reset(seed=seed, options=options)
        return obs, {"factors": self.factors(), "state": self.task_state()}

    def step(self, action):
        action = int(action)
        reward = self._collect_ahead() if action == 2 else 0.0
        obs, _, _, truncated, _ = super().step(action)
        terminated = bool(all(self.collected[i] for i, o in enumerate(self.objects) if o.kind == GOOD))
        # Miniworld's own step already counts steps and truncates at max_episode_steps.
        info = {"factors": self.factors(), "state": self.task_state()}
        return obs, reward, terminated, truncated and not terminated, info

    def set_scene(
        self, agent_xz: Sequence[float], agent_dir: float, object_xz: np.ndarray, object_dir: np.ndarray
    ) -> np.ndarray:
        """Put the agent and every object at exactly these poses, none collected; return the observation.

        For factor datasets and tests that need a chosen scene rather than a sampled one. Call it
        after ``reset``; rows of ``object_xz`` (n, 2) and ``object_dir`` (n,) follow ``self.objects``.
        Positions are not checked for collisions, and the step count is left as it is.
        """
        object_xz = np.asarray(object_xz, dtype=np.float64)
        object_dir = np.asarray(object_dir, dtype=np.float64)
        n = len(self.objects)
        if object_xz.shape != (n, 2) or object_dir.shape != (n,):
            raise ValueError(
                f"set_scene: expected object_xz of shape ({n}, 2) and object_dir of shape ({n},), "
                f"one row per object; got {object_xz.shape} and {object_dir.shape}"
            )
        self.agent.pos = np.array([agent_xz[0], 0.0, agent_xz[1]], dtype=np.float64)
        self.agent.dir = float(agent_dir)
        for obj, (x, z), yaw in zip(self.objects, object_xz, object_dir):
            obj.pos = np.array([x, 0.0, z])
            obj.dir = float(yaw)
        self.collected[:] = False
        self.entities = [*self.objects, self.agent]
        # Miniworld compiles the room into GL display list 1, which every env in the process shares:
        # another env's reset (or set_scene) may have replaced it since, so compile ours again first.
        self._render_static()
        return self.render_obs()

    def object_mask(self) -> np.ndarray:
        """Which pixels of the current observation show a good or bad object: bool (H, W).

        The frame rendered again without them differs exactly there (Miniworld casts no shadows).
        """
        shown = self.render_obs()
        entities = self.entities
        self.entities = [e for e in entities if not (isinstance(e, ColouredBox) and e.kind != DISTRACTOR)]
        try:
            background = self.render_obs()
        finally:
            self.entities = entities
        return np.any(shown != background, axis=-1)

    def factors(self) -> dict[str, Any]:
        """Ground-truth state of the scene as arrays (see class docstring)."""
        return {
            "object_set": OBJECT_SET_NAMES.index(self.object_set),
            "room_style": ROOM_STYLE_NAMES.index(self.room_style),
            "agent_x": float(self.agent.pos[0]),
            "agent_z": float(self.agent.pos[2]),
            "agent_dir": float(math.remainder(self.agent.dir, 2 * math.pi)),
            "object_xz": np.array([[o.pos[0], o.pos[2]] for o in self.objects], dtype=np.float32),
            "object_kind": np.array([o.kind for o in self.objects], dtype=np.int8),
            "object_collected": self.collected.copy(),
        }

    def task_state(self) -> np.ndarray:
        """Everything the task depends on, in the agent's frame, as a fixed-size float vector.

        Agent x and z (over the room size), cos and sin of its heading, the fraction of the
        episode's steps used; then for each good and bad object (distractors are left out, so
        domains with and without them give vectors of one size): its distance ahead of and to the
        right of the agent (over the room size, 0 once collected), its kind (+1/−1) and whether it
        was collected. Appearance factors are not part of it: the oracle sees the task, not the room.
        """
        agent = self.agent
        head = [
            agent.pos[0] / self.room_size,
            agent.pos[2] / self.room_size,
            math.cos(agent.dir),
            math.sin(agent.dir),
            self.step_count / self.max_episode_steps,
        ]
        rows = []
        for i, obj in enumerate(self.objects):
            if obj.kind == DISTRACTOR:
                continue
            offset = obj.pos - agent.pos
            ahead, right = (
                (0.0, 0.0)
                if self.collected[i]
                else (float(offset @ agent.dir_vec) / self.room_size, float(offset @ agent.right_vec) / self.room_size)
            )
            rows.append([ahead, right, float(obj.kind), float(self.collected[i])])
        return np.concatenate([head, np.ravel(rows)]).astype(np.float32)


def task_quantities(states: np.ndarray, half_fov_deg: float = 30.0) -> dict:
    """What a policy needs to read from a frame, computed from ``task_state`` vectors (N, 5 + 4 k),
    for the task probe (vision_models/metrics/task_probe.py).

    The agent's position and heading; whether a good object is in view; and for the nearest object
    in view (ahead, within ``half_fov_deg`` of the view axis — the default camera's 60° — and not yet
    collected): its kind (good or bad), bearing and distance. Distances are in room sizes.
    """
    from vision_models.metrics.task_probe import CLASSIFICATION, REGRESSION, Quantity

    states = np.asarray(states, float)
    objects = states[:, 5:].reshape(len(states), (states.shape[1] - 5) // 4, 4)  # ahead, right, kind, collected
    ahead, right, kind, collected = (objects[..., i] for i in range(4))
    bearing = np.degrees(np.arctan2(right, ahead))
    distance = np.hypot(ahead, right)
    in_view = (ahead > 0) & (np.abs(bearing) <= half_fov_deg) & (collected == 0)
    nearest = np.argmin(np.where(in_view, distance, np.inf), axis=1)
    rows = np.arange(len(states))
    visible = in_view.any(axis=1)
    return {
        "agent_x": Quantity(REGRESSION, states[:, 0]),
        "agent_z": Quantity(REGRESSION, states[:, 1]),
        "heading_cos": Quantity(REGRESSION, states[:, 2]),
        "heading_sin": Quantity(REGRESSION, states[:, 3]),
        "good_in_view": Quantity(CLASSIFICATION, (in_view & (kind > 0)).any(axis=1).astype(int)),
        "nearest_kind": Quantity(CLASSIFICATION, kind[rows, nearest].astype(int), visible),
        "nearest_bearing": Quantity(REGRESSION, bearing[rows, nearest], visible),
        "nearest_distance": Quantity(REGRESSION, distance[rows, nearest], visible),
    }
