"""CollectGoodObjects and its domains: the Gymnasium contract, determinism, rewards, domain shifts."""

from __future__ import annotations

import inspect
import math
import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from omegaconf import OmegaConf

from conftest import REPO
from envs import COLLECT_GOOD_OBJECTS
from envs.collect_good_objects import BAD, GOOD, OBJECT_SET_NAMES, OBJECT_SETS, ROOM_STYLE_NAMES, CollectGoodObjects
from envs.domains import Domain, DomainMixture, domains_from_config

ENV_CONFIG = OmegaConf.to_container(OmegaConf.load(REPO / "configs" / "env" / "collect_good_objects.yaml"))
FACTOR_KEYS = {
    "object_set",
    "room_style",
    "agent_x",
    "agent_z",
    "agent_dir",
    "object_xz",
    "object_kind",
    "object_collected",
}
LAYOUT_KEYS = ("agent_x", "agent_z", "agent_dir", "object_xz", "object_kind", "object_collected")
SEEDS = (0, 1, 2)
SOURCE = "hat_can_default"


def config_domains(role_or_names) -> list[Domain]:
    names = ENV_CONFIG[role_or_names] if isinstance(role_or_names, str) else list(role_or_names)
    return domains_from_config(ENV_CONFIG["id"], ENV_CONFIG["kwargs"], ENV_CONFIG["domains"], names, "test")


def resolved_kwargs(domain: Domain) -> dict:
    """A domain's constructor arguments with CollectGoodObjects' defaults filled in."""
    defaults = {
        k: p.default
        for k, p in inspect.signature(CollectGoodObjects.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    return {**defaults, **dict(domain.kwargs)}


@pytest.fixture(scope="module")
def env():
    env = CollectGoodObjects()
    yield env
    env.close()


def test_gymnasium_env_checker_passes(env):
    # The checker reports most problems as warnings ("WARN: ..."); count those as failures too.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)
    problems = [str(w.message) for w in caught if "WARN" in str(w.message) or "gymnasium" in w.filename]
    assert not problems


def test_reset_with_a_seed_is_deterministic(env):
    obs_a, info_a = env.reset(seed=3)
    for _ in range(5):
        env.step(2)
    obs_b, info_b = env.reset(seed=3)
    assert np.array_equal(obs_a, obs_b)
    assert_same_factors(info_a["factors"], info_b["factors"], FACTOR_KEYS)
    obs_c, info_c = env.reset(seed=4)
    assert not np.allclose(info_a["factors"]["object_xz"], info_c["factors"]["object_xz"])
    # The same actions from the same seed replay the same trajectory.
    actions = [0, 2, 2, 1, 2, 2, 2, 0, 2]
    runs = []
    for _ in range(2):
        env.reset(seed=11)
        runs.append([(env.step(a)[0].copy(), env.unwrapped.agent.pos.copy()) for a in actions])
    for (o1, p1), (o2, p2) in zip(*runs):
        assert np.array_equal(o1, o2) and np.array_equal(p1, p2)


def assert_same_factors(a, b, keys):
    for k in keys:
        assert np.array_equal(np.asarray(a[k]), np.asarray(b[k])), k


def test_info_factors_on_reset_and_step(env):
    obs, info = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    assert set(info["factors"]) == FACTOR_KEYS
    f = info["factors"]
    assert f["object_set"] == OBJECT_SET_NAMES.index("hat_can") and f["room_style"] == ROOM_STYLE_NAMES.index("default")
    assert f["object_xz"].shape == (6, 2) and f["object_kind"].tolist() == [GOOD] * 3 + [BAD] * 3
    assert f["object_collected"].dtype == bool and not f["object_collected"].any()
    assert 0 < f["agent_x"] < 5 and 0 < f["agent_z"] < 5 and -math.pi <= f["agent_dir"] <= math.pi
    _, _, _, _, info = env.step(0)  # turn left by 30 degrees
    assert set(info["factors"]) == FACTOR_KEYS
    turned = math.remainder(info["factors"]["agent_dir"] - f["agent_dir"], 2 * math.pi)
    assert turned == pytest.approx(math.radians(30), abs=1e-6)


def test_target_domains_keep_the_source_layout_and_change_the_frame():
    """Same seed, every target domain: the scene (agent pose, objects) is the source's; the frame is not."""
    source_env = config_domains([SOURCE])[0].make()
    source = {s: source_env.reset(seed=s) for s in SEEDS}
    source_env.close()
    source_kwargs = resolved_kwargs(config_domains([SOURCE])[0])
    for domain in config_domains("targets"):
        kwargs = resolved_kwargs(domain)
        changed = {k for k in kwargs if kwargs[k] != source_kwargs[k]}
        assert changed and changed <= set(ENV_CONFIG["domains"][domain.name]), (domain.name, changed)
        env = domain.make()
        frames_differ = []
        for s in SEEDS:
            obs, info = env.reset(seed=s)
            src_obs, src_info = source[s]
            n = len(src_info["factors"]["object_xz"])
            f = dict(info["factors"])
            if "num_distractors" in changed:  # distractors are added after the source's objects
                assert f["object_kind"][n:].tolist() == [0] * kwargs["num_distractors"]
                f = {k: (v[:n] if isinstance(v, np.ndarray) else v) for k, v in f.items()}
            assert_same_factors(f, src_info["factors"], LAYOUT_KEYS)
            assert f["object_set"] == src_info["factors"]["object_set"]
            frames_differ.append(not np.array_equal(obs, src_obs))
        env.close()
        if changed & {"room_style", "light_intensity", "light_rgb", "cam_height", "cam_pitch", "cam_fov_y"}:
            assert all(frames_differ), domain.name  # these change every frame
        else:
            assert any(frames_differ), domain.name  # sky or distractors: visible in some views


def test_heldout_pairing_differs_from_hat_can_default_only_in_room_textures():
    heldout, default = config_domains(["heldout_pairing", "hat_can_default"])
    a, b = resolved_kwargs(heldout), resolved_kwargs(default)
    assert {k for k in a if a[k] != b[k]} == {"room_style"}
    env_a, env_b = heldout.make(), default.make()
    for s in SEEDS:
        obs_a, info_a = env_a.reset(seed=s)
        obs_b, info_b = env_b.reset(seed=s)
        fa, fb = info_a["factors"], info_b["factors"]
        assert fa["room_style"] != fb["room_style"]
        assert_same_factors(fa, fb, FACTOR_KEYS - {"room_style"})
        assert not np.array_equal(obs_a, obs_b)
        # Walls and floor changed: the object colours (hat and can) are the same in both rooms.
        assert [tuple(np.round(o.color_vec * 255).astype(int)) for o in env_a.unwrapped.objects] == [
            tuple(np.round(o.color_vec * 255).astype(int)) for o in env_b.unwrapped.objects
        ]
    assert env_a.unwrapped.room_style == "alternative" and env_b.unwrapped.room_style == "default"
    env_a.close()
    env_b.close()


def test_object_colours_are_dmlab_colours():
    assert OBJECT_SETS == {
        "hat_can": {"bad": (58, 31, 255), "good": (241, 255, 30)},
        "cake_balloon": {"bad": (36, 255, 174), "good": (255, 12, 154)},
    }


def face(env, obj, gap=0.2) -> bool:
    """Put the agent just in front of ``obj``, facing it, where one step forward reaches only ``obj``.

    Returns False when no free approach direction exists for this object.
    """
    u = env.unwrapped
    reach = u.agent.radius + obj.radius
    for angle in np.linspace(-math.pi, math.pi, 16, endpoint=False):
        direction = np.array([math.cos(angle), 0.0, -math.sin(angle)])  # Miniworld: dir_vec = (cos, 0, -sin)
        pos = obj.pos - direction * (reach + gap)
        next_pos = pos + direction * u.params.get_max("forward_step")
        inside = 0.5 < pos[0] < u.room_size - 0.5 and 0.5 < pos[2] < u.room_size - 0.5
        others = [o for i, o in enumerate(u.objects) if o is not obj and not u.collected[i]]
        clear = all(np.linalg.norm((o.pos - next_pos)[[0, 2]]) > u.agent.radius + o.radius + 0.3 for o in others)
        if inside and clear:
            u.agent.pos = pos
            u.agent.dir = angle
            assert np.allclose(u.agent.dir_vec, direction)
            return True
    return False


@pytest.mark.parametrize("object_set", ["hat_can", "cake_balloon"])
def test_rewards_collection_and_termination(object_set):
    env = CollectGoodObjects(object_set=object_set)
    for seed in range(20):  # a layout where every object can be approached on its own
        env.reset(seed=seed)
        u = env.unwrapped
        order = [o for o in u.objects if o.kind == BAD][:1] + [o for o in u.objects if o.kind == GOOD]
        if all(face(env, o) for o in order):
            break
    else:
        pytest.fail("no layout in 20 seeds lets every object be approached")
    env.reset(seed=seed)
    u = env.unwrapped
    bad = next(o for o in u.objects if o.kind == BAD)
    good = [o for o in u.objects if o.kind == GOOD]

    assert face(env, bad)
    _, reward, terminated, truncated, info = env.step(2)
    assert reward == -1 and not terminated and not truncated
    assert bad not in u.entities and info["factors"]["object_collected"][u.objects.index(bad)]
    assert np.allclose(np.asarray(bad.color_vec) * 255, OBJECT_SETS[object_set]["bad"])

    for i, obj in enumerate(good):
        assert face(env, obj)
        _, reward, terminated, truncated, info = env.step(2)
        assert reward == 1, f"good object {i}"
        assert obj not in u.entities
        assert info["factors"]["object_collected"][u.objects.index(obj)]
        assert np.allclose(np.asarray(obj.color_vec) * 255, OBJECT_SETS[object_set]["good"])
        # The episode ends exactly when the last good object is collected (bad ones may remain).
        assert terminated == (i == len(good) - 1) and not truncated
    assert info["factors"]["object_collected"].sum() == len(good) + 1
    env.close()


def test_walking_into_a_collected_object_gives_nothing():
    env = CollectGoodObjects()
    for seed in range(20):
        env.reset(seed=seed)
        obj = next(o for o in env.unwrapped.objects if o.kind == GOOD)
        if face(env, obj):
            break
    pos = env.unwrapped.agent.pos.copy()
    assert env.step(2)[1] == 1
    env.unwrapped.agent.pos = pos
    assert env.step(2)[1] == 0
    env.close()


def test_episode_is_truncated_at_the_step_limit():
    env = CollectGoodObjects(max_episode_steps=5)
    env.reset(seed=0)
    results = [env.step(0) for _ in range(5)]  # turning in place collects nothing
    assert [r[3] for r in results] == [False] * 4 + [True]
    assert not any(r[2] for r in results) and all(r[1] == 0 for r in results)
    env.close()


def test_domain_mixture_draws_pins_and_refuses_unknown_domains():
    domains = config_domains(["hat_can_default", "cake_balloon_alternative"])
    mix = DomainMixture(domains)
    seen = [mix.reset(seed=s)[1]["domain"] for s in range(12)]
    assert set(seen) == {"hat_can_default", "cake_balloon_alternative"}
    # The domain in play is really that domain's environment.
    for s in range(4):
        _, info = mix.reset(seed=s)
        expected = dict(domains[[d.name for d in domains].index(info["domain"])].kwargs)
        assert OBJECT_SET_NAMES[info["factors"]["object_set"]] == expected["object_set"]
        assert ROOM_STYLE_NAMES[info["factors"]["room_style"]] == expected["room_style"]
        assert mix.step(1)[4]["domain"] == info["domain"]
    # A seeded mixture replays exactly.
    a, b = mix.reset(seed=5), mix.reset(seed=5)
    assert a[1]["domain"] == b[1]["domain"] and np.array_equal(a[0], b[0])
    # Pinning holds for later resets until unpinned.
    assert mix.reset(seed=0, options={"domain": "cake_balloon_alternative"})[1]["domain"] == "cake_balloon_alternative"
    assert {mix.reset(seed=s)[1]["domain"] for s in range(8)} == {"cake_balloon_alternative"}
    mix.reset(seed=0, options={"domain": None})
    assert len({mix.reset(seed=s)[1]["domain"] for s in range(12)}) == 2
    with pytest.raises(ValueError, match=r"'nowhere' is not in this mixture.*hat_can_default"):
        mix.reset(options={"domain": "nowhere"})
    mix.close()


def test_domain_weights_draw_a_domain_that_much_more_often():
    domains = config_domains(["hat_can_default", "cake_balloon_default", "cake_balloon_alternative"])
    uniform, weighted = DomainMixture(domains), DomainMixture(domains, {"hat_can_default": 4})
    counts = {}
    for mix in (uniform, weighted):
        mix.reset(seed=0)
        seen = [mix.reset()[1]["domain"] for _ in range(600)]
        counts[mix] = {name: seen.count(name) / len(seen) for name in mix.names}
        mix.close()
    assert abs(counts[uniform]["hat_can_default"] - 1 / 3) < 0.06
    assert abs(counts[weighted]["hat_can_default"] - 4 / 6) < 0.06  # 4 : 1 : 1
    assert abs(counts[weighted]["cake_balloon_default"] - 1 / 6) < 0.05
    with pytest.raises(ValueError, match=r"weights name \['heldout_pairing'\]"):
        DomainMixture(domains, {"heldout_pairing": 2})


def test_unknown_domain_names_and_env_arguments_are_refused():
    with pytest.raises(ValueError, match=r"\['nowhere'\] are not defined.*hat_can_default"):
        config_domains(["hat_can_default", "nowhere"])
    with pytest.raises(ValueError, match=r"unknown room_style 'marble'"):
        CollectGoodObjects(room_style="marble")
    with pytest.raises(ValueError, match=r"domain 'typo'.*colour"):
        Domain("typo", COLLECT_GOOD_OBJECTS, {"colour": "red"}).make()


def test_vision_domains_never_hold_the_heldout_pairing():
    heldout = resolved_kwargs(config_domains(["heldout_pairing"])[0])
    pairing = (heldout["object_set"], heldout["room_style"])
    assert pairing == ("hat_can", "alternative")
    vision = config_domains("vision")
    assert vision
    for domain in vision:
        kwargs = resolved_kwargs(domain)
        assert (kwargs["object_set"], kwargs["room_style"]) != pairing, domain.name
    # The source domains are DARLA's three training pairings.
    assert {(resolved_kwargs(d)["object_set"], resolved_kwargs(d)["room_style"]) for d in config_domains("source")} == {
        ("hat_can", "default"),
        ("cake_balloon", "default"),
        ("cake_balloon", "alternative"),
    }


def test_a_room_too_full_for_every_distractor_places_what_fits_instead_of_hanging():
    from envs.collect_good_objects import CollectGoodObjects

    env = CollectGoodObjects(num_distractors=10)  # 6 objects, the agent and 10 boxes do not fit in 5 x 5 m
    _, info = env.reset(seed=0)
    kinds = info["factors"]["object_kind"]
    assert (kinds != 0).sum() == 6 and 0 < (
        kinds == 0
    ).sum() < 10  # the task's objects always, distractors as room allows
    env.close()


def test_see_collects_its_frames_by_the_domain_weights(tmp_path):
    """see.domain_weights reaches the exploration episodes: a vision domain weighted 1000 : 1 : 1
    fills nearly every frame, and the see run records the weights it ran with."""
    from conftest import check_ok, run_cli
    from darla.artifacts import read_json

    weights = "see.domain_weights={hat_can_default: 1000}"
    check_ok(run_cli("see", "experiment=quick", "vision_model=random_cnn", "see.frames=300", weights, cwd=tmp_path))
    see = tmp_path / "runs" / "quick_random_cnn" / "see"
    data = np.load(see / "frames.npz")
    names = list(ENV_CONFIG["vision"])
    assert np.mean(data["domain"] == names.index("hat_can_default")) > 0.95
    assert read_json(see / "config.json")["see"]["domain_weights"] == {"hat_can_default": 1000}
