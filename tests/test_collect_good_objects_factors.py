"""CollectGoodObjectsFactors: the factor-dataset protocol over CollectGoodObjects' own scenes.

The reference for every frame is the environment itself: a fresh env, reset, with the agent and
boxes moved there by hand and one turn taken, returns its observation from step(); the dataset
must render exactly that frame.
"""

from __future__ import annotations

import math
import time

import gymnasium as gym
import numpy as np
import pytest
import torch

from envs import COLLECT_GOOD_OBJECTS
from envs.collect_good_objects import OBJECT_SETS, CollectGoodObjects
from envs.collect_good_objects_factors import CollectGoodObjectsFactors
from envs.factor_dataset import FactorDataset

ROOM_STYLES = ("default", "alternative")  # two textures keep the suite fast: each costs ~2 s to load
TURN_DEGREES = 30.0  # CollectGoodObjects' default turn step
OBJECT_SET, ROOM_STYLE, AGENT_X, AGENT_Z, AGENT_DIR, LAYOUT = range(6)


@pytest.fixture(scope="module")
def dataset():
    ds = CollectGoodObjectsFactors(room_styles=ROOM_STYLES, num_layouts=2)
    yield ds
    ds.close()


def env_observation(env: gym.Env, agent_xz, heading: float, object_xz, object_dir):
    """The env's own observation with the agent and boxes put there by hand: (frame, info factors).

    The agent is set one turn short of ``heading`` and turns left, so the frame is what step()
    returns. Independent of set_scene, which the dataset renders through.
    """
    env.reset(seed=0)
    u = env.unwrapped
    for obj, (x, z), yaw in zip(u.objects, object_xz, object_dir):
        obj.pos, obj.dir = np.array([x, 0.0, z]), float(yaw)
    u.agent.pos = np.array([agent_xz[0], 0.0, agent_xz[1]])
    u.agent.dir = heading - math.radians(TURN_DEGREES)
    obs, reward, _, _, info = env.step(0)
    assert reward == 0
    return obs, info["factors"]


def scene(ds: CollectGoodObjectsFactors, row):
    """(agent_xz, heading, object_xz, object_dir) of one factor vector, from the dataset's value tables."""
    return (
        (ds.agent_x_values[row[AGENT_X]], ds.agent_z_values[row[AGENT_Z]]),
        ds.agent_dir_values[row[AGENT_DIR]],
        ds.layout_xz[row[LAYOUT]],
        ds.layout_dir[row[LAYOUT]],
    )


def test_protocol_conformance(dataset):
    assert isinstance(dataset, FactorDataset)
    assert dataset.factor_names == ("object_set", "room_style", "agent_x", "agent_z", "agent_dir", "layout")
    assert dataset.factor_sizes == (2, 2, 3, 3, 12, 2)
    assert dataset.image_shape == (64, 64, 3)
    factors = dataset.sample_factors(500, np.random.default_rng(0))
    assert factors.dtype == np.int64 and factors.shape == (500, 6)
    assert ((factors >= 0) & (factors < np.array(dataset.factor_sizes))).all()
    assert all(len(np.unique(factors[:, k])) == size for k, size in enumerate(dataset.factor_sizes))
    assert np.array_equal(factors, dataset.sample_factors(500, np.random.default_rng(0)))
    images = dataset.render(factors[:5])
    assert images.dtype == np.uint8 and images.shape == (5, 64, 64, 3)
    assert dataset.render(factors[:0]).shape == (0, 64, 64, 3)
    # Headings are whole turns of the env, starting at 0.
    assert np.allclose(np.degrees(dataset.agent_dir_values), np.arange(12) * TURN_DEGREES)


def test_render_is_deterministic_whatever_the_batch(dataset):
    rows = dataset.sample_factors(12, np.random.default_rng(1))
    rows[:, OBJECT_SET], rows[:, ROOM_STYLE] = np.arange(12) % 2, np.arange(12) // 2 % 2  # every env, interleaved
    batch = dataset.render(rows)
    assert np.array_equal(batch, dataset.render(rows))
    assert np.array_equal(batch, dataset.render(rows[::-1])[::-1])
    # Another env's reset replaces Miniworld's shared display list; frames must not change.
    other = CollectGoodObjects(room_style="alternative")
    assert np.array_equal(batch, np.concatenate([dataset.render(row[None]) for row in rows]))
    other.close()


def test_frame_equals_the_envs_own_observation_there(dataset):
    rows = dataset.sample_factors(4, np.random.default_rng(2))
    rows[:, OBJECT_SET], rows[:, ROOM_STYLE] = [0, 0, 1, 1], [0, 1, 0, 1]
    observations = []
    for row in rows:
        agent_xz, heading, object_xz, object_dir = scene(dataset, row)
        env = gym.make(
            COLLECT_GOOD_OBJECTS,
            disable_env_checker=True,
            object_set=dataset.object_sets[row[OBJECT_SET]],
            room_style=dataset.room_styles[row[ROOM_STYLE]],
        )
        obs, factors = env_observation(env, agent_xz, heading, object_xz, object_dir)
        env.close()
        assert (factors["agent_x"], factors["agent_z"]) == pytest.approx(agent_xz)
        assert factors["agent_dir"] == pytest.approx(math.remainder(heading, 2 * math.pi), abs=1e-9)
        assert np.allclose(factors["object_xz"], object_xz) and not factors["object_collected"].any()
        observations.append(obs)
    # One batch after all those envs were built: every row still shows its own room.
    assert np.array_equal(dataset.render(rows), np.stack(observations))


def test_set_scene_brings_collected_objects_back():
    env = CollectGoodObjects()
    object_xz = np.array([[2.3, 2.5], [0.6, 0.6], [0.6, 4.4], [4.4, 0.6], [4.4, 4.4], [2.5, 4.4]])
    object_dir = np.zeros(6)
    before = env.set_scene((1.0, 2.5), 0.0, object_xz, object_dir)  # facing +x, 1.3 m from object 0
    assert env.step(2)[1] == 1  # walked into object 0 (good): collected, gone from the scene
    assert env.objects[0] not in env.entities and env.factors()["object_collected"][0]
    after = env.set_scene((1.0, 2.5), 0.0, object_xz, object_dir)
    assert np.array_equal(after, before)
    assert not env.factors()["object_collected"].any() and all(o in env.entities for o in env.objects)
    with pytest.raises(ValueError, match=r"expected object_xz of shape \(6, 2\)"):
        env.set_scene((1.0, 2.5), 0.0, object_xz[:5], object_dir[:5])
    env.close()


def test_env_kwargs_reach_every_environment(dataset):
    kwargs = {"light_intensity": 0.5, "cam_height": 1.2}
    dim = CollectGoodObjectsFactors(
        object_sets=["cake_balloon"], room_styles=["default"], num_layouts=1, env_kwargs=kwargs
    )
    row = np.array([0, 0, 1, 1, 3, 0])
    env = CollectGoodObjects(object_set="cake_balloon", **kwargs)
    obs, _ = env_observation(env, *scene(dim, row))
    env.close()
    frame = dim.render(row[None])[0]
    dim.close()
    assert np.array_equal(frame, obs)
    assert not np.array_equal(frame, dataset.render(np.array([[1, 0, 1, 1, 3, 0]]))[0])


def test_each_factor_changes_the_frame(dataset):
    base = np.array([0, 0, 1, 1, 0, 0])
    for factor in (ROOM_STYLE, AGENT_X, AGENT_Z, AGENT_DIR):
        # The room, the position and the heading show in every frame: every value gives its own frame.
        rows = np.repeat(base[None], dataset.factor_sizes[factor], axis=0)
        rows[:, factor] = np.arange(dataset.factor_sizes[factor])
        frames = dataset.render(rows).reshape(len(rows), -1)
        assert len(np.unique(frames, axis=0)) == len(rows), dataset.factor_names[factor]
    # Objects are out of sight in some views: over all headings, the object set and layout show.
    for factor in (OBJECT_SET, LAYOUT):
        rows = np.repeat(base[None], 12, axis=0)
        rows[:, AGENT_DIR] = np.arange(12)
        changed = rows.copy()
        changed[:, factor] = 1
        assert not np.array_equal(dataset.render(rows), dataset.render(changed)), dataset.factor_names[factor]


def test_object_set_changes_only_object_pixels(dataset):
    rows = np.zeros((12, 6), dtype=np.int64)
    rows[:, AGENT_X], rows[:, AGENT_Z], rows[:, AGENT_DIR] = 0, 2, np.arange(12)
    hat_can = dataset.render(rows)
    cake_balloon = dataset.render(rows + np.eye(6, dtype=np.int64)[OBJECT_SET])
    # The same views with no boxes at all, from the env: the pixels boxes cover are where they differ.
    empty = CollectGoodObjects(room_style=dataset.room_styles[0], num_good=0, num_bad=0)
    background = np.stack([env_observation(empty, *scene(dataset, row))[0] for row in rows])
    empty.close()
    box_pixels = (hat_can != background).any(-1) | (cake_balloon != background).any(-1)
    differ = (hat_can != cake_balloon).any(-1)
    assert differ.sum() > 100  # the boxes are in view
    assert not (differ & ~box_pixels).any()
    # And they are the object set's colours: shaded, so compare chromaticity (colour / its sum).
    palette = np.array([OBJECT_SETS[s][k] for s in ("hat_can", "cake_balloon") for k in ("bad", "good")], float)
    palette /= palette.sum(1, keepdims=True)
    for frames, first in ((hat_can, 0), (cake_balloon, 2)):
        colours = frames[differ].astype(float) + 1e-6
        colours /= colours.sum(1, keepdims=True)
        nearest = np.linalg.norm(colours[:, None] - palette[None], axis=-1).argmin(1)
        assert np.isin(nearest, [first, first + 1]).mean() > 0.9


def test_layouts_keep_every_box_clear_of_walls_boxes_and_agent_positions(dataset):
    env = CollectGoodObjects()
    agent_r, box_r, room = env.agent.radius, env.objects[0].radius, env.room_size
    grid = np.array([(x, z) for x in dataset.agent_x_values for z in dataset.agent_z_values])
    assert dataset.layout_xz.shape == (2, 6, 2) and dataset.layout_dir.shape == (2, 6)
    for xz, yaw in zip(dataset.layout_xz, dataset.layout_dir):
        assert ((xz >= box_r) & (xz <= room - box_r)).all()
        gaps = np.linalg.norm(xz[:, None] - xz[None], axis=-1) + np.eye(6) * 1e9
        assert gaps.min() >= 2 * box_r
        assert np.linalg.norm(xz[:, None] - grid[None], axis=-1).min() >= agent_r + box_r
        # Miniworld's own collision test agrees: the agent and every box are free where they stand.
        for agent_xz in grid:
            env.set_scene(agent_xz, 0.0, xz, yaw)
            assert not env.intersect(env.agent, env.agent.pos, env.agent.radius)
            assert not any(env.intersect(box, box.pos, box.radius) for box in env.objects)
    env.close()
    # Layouts are a function of the seed (the first env build dominates these constructions).
    same = CollectGoodObjectsFactors(object_sets=["hat_can"], room_styles=["default"], num_layouts=2)
    other = CollectGoodObjectsFactors(object_sets=["hat_can"], room_styles=["default"], num_layouts=2, layout_seed=1)
    assert np.array_equal(same.layout_xz, dataset.layout_xz) and np.array_equal(same.layout_dir, dataset.layout_dir)
    assert not np.allclose(other.layout_xz, dataset.layout_xz)
    same.close()
    other.close()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"room_styles": ["marble"]}, r"room_styles must be distinct names"),
        ({"object_sets": []}, r"object_sets must be distinct names"),
        ({"num_x": 0}, r"num_x must be a positive integer"),
        ({"num_headings": 5}, r"num_headings=5 gives 72°.*turn step 30°"),
        ({"agent_margin": 0.2}, r"agent_margin must lie between"),
        ({"num_x": 5, "num_z": 5, "agent_margin": 0.5}, r"no room for 6 boxes"),
        ({"env_kwargs": {"room_style": "cinder"}}, r"env_kwargs must not set \['room_style'\]"),
        ({"heldout_pairings": [["hat_can", "marble"]]}, r"heldout_pairings entries must be \[object_set, room_style\]"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CollectGoodObjectsFactors(**{"object_sets": ["hat_can"], "room_styles": ["default"], **kwargs})


def test_heldout_pairing_is_never_drawn_for_training():
    """DMLab's held-out pairing (hat_can, alternative) is in the grid for metrics, never in training."""
    from darla.vision_training import FactorBatches
    from envs.factor_dataset import grid_factors

    ds = CollectGoodObjectsFactors(
        room_styles=ROOM_STYLES,
        num_x=1,
        num_z=1,
        num_headings=1,
        num_layouts=1,
        heldout_pairings=[["hat_can", "alternative"]],
    )
    try:
        grid = grid_factors(ds.factor_sizes)
        heldout = (grid[:, OBJECT_SET] == ds.object_sets.index("hat_can")) & (
            grid[:, ROOM_STYLE] == ds.room_styles.index("alternative")
        )
        assert heldout.sum() == 1 and (ds.allowed(grid) == ~heldout).all()
        generator = torch.Generator().manual_seed(0)
        for kind in ("images", "factor_sweeps"):
            for _ in range(5):
                batch = FactorBatches(ds, kind)(8, generator, "cpu")
                images = batch[0] if kind == "factor_sweeps" else batch
                forbidden = torch.from_numpy(ds.render(grid[heldout])).permute(0, 3, 1, 2).float() / 255
                assert not (images == forbidden).flatten(1).all(1).any()
    finally:
        ds.close()


def test_bad_factors_are_refused(dataset):
    with pytest.raises(ValueError, match=r"factors must be integer class indices of shape \(n, 6\)"):
        dataset.render(np.zeros((2, 5), dtype=np.int64))
    with pytest.raises(ValueError, match=r"factors must be integer"):
        dataset.render(np.zeros((2, 6)))
    with pytest.raises(ValueError, match=r"factors\[1, 4\] = 12 is outside agent_dir's range 0..11"):
        dataset.render(np.array([[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 12, 0]]))


def test_render_speed(dataset):
    rows = dataset.sample_factors(200, np.random.default_rng(3))
    dataset.render(np.array([[o, r, 0, 0, 0, 0] for o in range(2) for r in range(2)]))  # build every env first
    start = time.perf_counter()
    dataset.render(rows)
    seconds = time.perf_counter() - start
    print(f"\nCollectGoodObjectsFactors: {len(rows) / seconds:.0f} renders/s (64x64, one process)")


def test_object_masks_are_the_pixels_the_boxes_cover_and_measure_what_a_reconstruction_loses(dataset):
    import torch

    from darla.latent_env import frames_to_tensor
    from vision_models.diagnostics import object_reconstruction

    rows = np.zeros((12, 6), dtype=np.int64)
    rows[:, AGENT_X], rows[:, AGENT_Z], rows[:, AGENT_DIR] = 1, 0, np.arange(12)
    frames, masks = dataset.render(rows), dataset.object_masks(rows)
    empty = CollectGoodObjects(room_style=dataset.room_styles[0], num_good=0, num_bad=0)
    background = np.stack([env_observation(empty, *scene(dataset, row))[0] for row in rows])
    empty.close()
    np.testing.assert_array_equal(masks, (frames != background).any(-1))
    assert masks.any(axis=(1, 2)).sum() >= 3  # boxes in view in several headings

    class Draws(torch.nn.Module):  # a "vision model" that draws fixed images, whatever it is shown
        def __init__(self, images):
            super().__init__()
            self.images = images

        def reconstruct(self, x):
            return self.images

    seen = frames_to_tensor(frames, "cpu")
    masks_t = torch.from_numpy(masks)
    perfect = object_reconstruction(Draws(seen), seen, masks_t)
    assert perfect["object_mse"] == 0 and perfect["background_mse"] == 0
    room_only = object_reconstruction(Draws(frames_to_tensor(background, "cpu")), seen, masks_t)
    assert room_only["object_mse"] > 0.01 and room_only["background_mse"] == 0
    assert room_only["object_to_background"] == float("inf")
