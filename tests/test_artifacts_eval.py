"""Artifacts (safetensors state, atomic writes) and evaluation (fixed-seed episodes, IQM)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from darla.artifacts import atomic_write, load_state, load_weights, save_state, save_weights, versions, write_json
from darla.evaluation import describe, interquartile_mean, random_act, run_episodes
from darla.vec_env import make_vec_env
from envs import COLLECT_GOOD_OBJECTS
from envs.domains import Domain, DomainMixture

# A small crowded room and short episodes: random play hits objects, so returns vary.
SMALL = {"room_size": 4.0, "object_size": 0.6, "max_episode_steps": 25, "forward_step": 0.5}
DOMAIN = Domain("small_hat_can", COLLECT_GOOD_OBJECTS, {"object_set": "hat_can", **SMALL})
OTHER = Domain("small_cake_balloon", COLLECT_GOOD_OBJECTS, {"object_set": "cake_balloon", **SMALL})


def _trained_pair():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(5, 3)).pow(2).sum().backward()
        optimizer.step()
    return model, optimizer


def test_save_and_load_state_round_trip(tmp_path):
    model, optimizer = _trained_pair()
    generator = torch.Generator().manual_seed(123)
    generator.manual_seed(123)
    torch.randint(10, (4,), generator=generator)  # advance it: its state is not a fresh seed's
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "sampler": generator.get_state(),
        "step": 41,
        "best": -0.25,
        "label": "vision",
        "history": [{"timesteps": 512, "mean": 1.5}],
        "empty": {},
    }
    path = save_state(tmp_path / "state.safetensors", state)
    loaded = load_state(path)

    assert loaded["step"] == 41 and type(loaded["step"]) is int
    assert loaded["best"] == -0.25 and loaded["label"] == "vision" and loaded["empty"] == {}
    assert loaded["history"] == [{"timesteps": 512, "mean": 1.5}]
    assert loaded["model"].keys() == state["model"].keys()
    assert all(torch.equal(loaded["model"][k], v) for k, v in state["model"].items())
    assert all(isinstance(k, int) for k in loaded["optimizer"]["state"])  # parameter ids come back as ints

    # The restored optimiser and generator continue exactly as the originals do.
    model2, optimizer2 = _trained_pair()
    with torch.no_grad():
        for p in model2.parameters():
            p.add_(1.0)  # make sure the loaded state, not the rebuild, is what matches
    model2.load_state_dict(loaded["model"])
    optimizer2.load_state_dict(loaded["optimizer"])
    generator2 = torch.Generator()
    generator2.set_state(loaded["sampler"])
    assert torch.equal(torch.randint(1000, (8,), generator=generator), torch.randint(1000, (8,), generator=generator2))
    x = torch.randn(5, 3)
    for m, opt in ((model, optimizer), (model2, optimizer2)):
        opt.zero_grad()
        m(x).pow(2).sum().backward()
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), model2.parameters()))
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_corrupt_state_and_weights_name_their_file(tmp_path):
    model, _ = _trained_pair()
    path = save_weights(tmp_path / "weights.safetensors", model)
    load_weights(path, torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)))
    with pytest.raises(ValueError, match=f"{path} does not fit Sequential"):
        load_weights(path, torch.nn.Sequential(torch.nn.Linear(3, 5)))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match=f"{path} is not a readable safetensors file"):
        load_weights(path, model)
    with pytest.raises(ValueError, match=f"{path} is not a readable safetensors file"):
        load_state(path)
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'missing.safetensors'} does not exist"):
        load_state(tmp_path / "missing.safetensors")


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = write_json(tmp_path / "manifest.json", {"version": 1})
    old = target.read_bytes()

    def failing_writer(tmp):
        tmp.write_text('{"version": 2, "half": ')  # half-written, then the writer dies
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, failing_writer)
    assert target.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]  # no temporary file left behind
    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "new.json", failing_writer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]  # nothing under the new name either
    atomic_write(target, lambda tmp: tmp.write_text("replaced"))
    assert target.read_text() == "replaced"


@pytest.mark.parametrize(
    "values, expected",
    [
        ([1, 2, 3, 4, 5, 6, 7, 8], 4.5),  # middle four: 3..6
        ([0, 0, 1, 2, 3, 4, 100, 100], 2.5),  # outliers trimmed
        ([5.0], 5.0),
        ([-1, 3], 1.0),  # fewer than four values: nothing to trim
        ([9, 1, 5, 3, 7], 5.0),  # unsorted, n=5: trims one from each end -> mean(3, 5, 7)
        ([1, 2, 3, 4], 2.5),  # n=4: trims one from each end -> mean(2, 3)
    ],
)
def test_interquartile_mean(values, expected):
    assert interquartile_mean(values) == pytest.approx(expected)


def test_interquartile_mean_of_nothing_is_nan_and_describe_reports_it():
    assert np.isnan(interquartile_mean([]))
    stats = describe([0, 0, 1, 2, 3, 4, 100, 100])
    assert stats["iqm"] == pytest.approx(2.5) and stats["mean"] == pytest.approx(26.25)
    assert stats["episodes"] == 8 and stats["min"] == 0 and stats["max"] == 100
    assert stats["std"] == pytest.approx(np.std([0, 0, 1, 2, 3, 4, 100, 100], ddof=1))


def frame_policy(obs: np.ndarray) -> np.ndarray:
    """A deterministic policy of the frame alone (so an episode depends only on its seed)."""
    return (obs.reshape(len(obs), -1).astype(np.int64).sum(1) // 7) % 3


def test_run_episodes_is_reproducible_and_plays_exactly_the_seeded_episodes():
    venv = make_vec_env([DOMAIN, OTHER], 2, "dummy")
    try:
        np.random.seed(999)
        caller_state = np.random.get_state()[1].copy()
        torch_state = torch.get_rng_state()
        first = run_episodes(venv, random_act(venv), first_seed=7, episodes=5, domain=DOMAIN.name)
        # The caller's random streams are untouched.
        assert np.array_equal(np.random.get_state()[1], caller_state) and torch.equal(
            torch.get_rng_state(), torch_state
        )
        assert [e["seed"] for e in first] == [7, 8, 9, 10, 11]  # exactly `episodes` episodes, odd count included
        again = run_episodes(venv, random_act(venv), first_seed=7, episodes=5, domain=DOMAIN.name)
        assert again == first
        assert all(1 <= e["length"] <= SMALL["max_episode_steps"] for e in first)
        assert len({(e["return"], e["length"]) for e in first}) > 1  # the seeds really play different episodes

        # A policy of the frame alone plays the same episode for a seed whatever the batching.
        batched = run_episodes(venv, frame_policy, first_seed=20, episodes=3, domain=OTHER.name)
        single = make_vec_env([DOMAIN, OTHER], 1, "dummy")
        alone = [
            run_episodes(single, frame_policy, first_seed=s, episodes=1, domain=OTHER.name)[0] for s in (20, 21, 22)
        ]
        single.close()
        assert batched == alone
    finally:
        venv.close()

    # And that episode is the one its seed defines: reset with seed first_seed + i, pinned to the domain.
    mixture = DomainMixture([DOMAIN, OTHER])
    for record in batched:
        obs, info = mixture.reset(seed=record["seed"], options={"domain": OTHER.name})
        assert info["domain"] == OTHER.name
        total, length, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, _ = mixture.step(int(frame_policy(obs[None])[0]))
            total, length, done = total + reward, length + 1, terminated or truncated
        assert (total, length) == (record["return"], record["length"])
    mixture.close()


def test_summary_when_the_source_return_is_zero(tmp_path):
    """An untrained policy often scores 0 on the source: the report must still be written."""
    from darla.artifacts import read_json, write_jsonl
    from darla.transfer import summarize

    episodes = [
        {"domain": "src", "role": "source", "policy": "policy", "seed": s, "return": r, "length": 10}
        for s, r in ((0, 1.0), (1, -1.0))
    ]
    episodes += [
        {"domain": "tgt", "role": "target", "policy": "policy", "seed": s, "return": r, "length": 10}
        for s, r in ((0, 1.0), (1, 1.0))
    ]
    write_jsonl(tmp_path / "episodes.jsonl", episodes)
    summary = summarize(tmp_path)
    assert summary["source"]["mean"] == 0 and summary["target"]["mean"] == 1
    assert summary["transfer_ratio"] is None
    assert read_json(tmp_path / "summary.json")["target"]["episodes"] == 2
    assert "target/source ratio undefined" in (tmp_path / "report.md").read_text()


def test_manifests_record_the_cpu():
    """Other CPUs (AMX or not) give other weights from the same seed: the manifest says which ran it."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo to check the record against")
    text = cpuinfo.read_text()
    recorded = versions()["cpu"]
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
    assert recorded.startswith(model)
    named = recorded.rsplit("(", 1)[1].rstrip(")").split()
    for flag in ("avx2", "avx512f", "avx512_bf16", "amx_bf16"):
        assert (flag in named) == (flag in text.split()), flag
