"""Episode videos of a trained policy: `python -m darla.stage video <run>` on a tiny run of its own.

The run's transfer plays one env at a time, so the video's episodes must be transfer's episodes
exactly (same seeds, same actions): same returns and lengths, frame for frame.
"""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from conftest import check_ok, compose_cfg, output, run_cli
from darla import video
from darla.artifacts import read_json, read_jsonl
from envs.domains import DomainMixture

DOMAINS = ("env.source=[hat_can_default]", "env.targets=[heldout_pairing]")
TINY = (
    "experiment=quick",
    "vec_env=dummy",
    "num_envs=1",
    "see.frames=100",
    "act.total_timesteps=512",
    "act.eval_every=256",
    "act.eval_episodes=1",
    "transfer.episodes=2",
    "transfer.random_policy=false",
    "env.vision=[hat_can_default]",
    *DOMAINS,
    "env.target_groups={heldout:[heldout_pairing]}",
)
NAME = "quick_random_cnn"
SEED = 100_000  # configs/darla.yaml: transfer.seed, the default video.seed
SCALE, CAPTION = 4, video.CAPTION_HEIGHT


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("video")
    check_ok(run_cli("all", "vision_model=random_cnn", f"runs_dir={root / 'runs'}", *TINY, cwd=root, timeout=300))
    return root


def gif_frames(path) -> list[np.ndarray]:
    ok, animation = cv2.imdecodeanimation(np.fromfile(path, np.uint8))
    assert ok, path
    return [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in animation.frames]


def reset_frame(domain: str, seed: int) -> np.ndarray:
    """The first frame of the episode a vector env seeded with ``seed`` plays on ``domain``."""
    [(_, found)] = video.video_domains(
        compose_cfg("video", ["experiment=quick", *DOMAINS, f"video.domains=[{domain}]"])
    )
    mixture = DomainMixture([found])
    obs, _ = mixture.reset(seed=seed, options={"domain": domain})
    mixture.close()
    return obs


def test_video_replays_transfer_episodes_frame_by_frame(tiny_run):
    runs = tiny_run / "runs"
    proc = check_ok(
        run_cli(
            "video",
            NAME,
            f"runs_dir={runs}",
            "experiment=quick",
            *DOMAINS,
            "video.episodes=2",
            cwd=tiny_run,
            timeout=300,
        )
    )
    out = runs / NAME / "video"
    assert f"[video] done: {out}" in output(proc)
    transfer = {(e["domain"], e["seed"]): e for e in read_jsonl(runs / NAME / "transfer" / "episodes.jsonl")}
    rows = read_jsonl(out / "episodes.jsonl")
    # Default domains: the first source and the first target; episode k has seed video.seed + k.
    assert [(r["domain"], r["role"], r["seed"]) for r in rows] == [
        ("hat_can_default", "source", SEED),
        ("hat_can_default", "source", SEED + 1),
        ("heldout_pairing", "target", SEED),
        ("heldout_pairing", "target", SEED + 1),
    ]
    act_hash = read_json(runs / NAME / "act" / "manifest.json")["content_hash"]
    for row in rows:
        played = transfer[(row["domain"], row["seed"])]
        assert (row["return"], row["length"]) == (played["return"], played["length"]), row
        assert row["act_hash"] == act_hash and row["file"] == f"{row['domain']}_seed{row['seed']}.gif"
        frames = gif_frames(out / row["file"])
        assert len(frames) == row["length"] + 1  # the reset frame, then one per step, the last one terminal
        assert frames[0].shape == (64 * SCALE + CAPTION, 64 * SCALE, 3)
    # What is filmed is the env's own frame (enlarged; GIF colours are quantised), not something else.
    first = gif_frames(out / "heldout_pairing_seed100000.gif")[0][: 64 * SCALE : SCALE, ::SCALE].astype(int)
    error = {seed: np.abs(first - reset_frame("heldout_pairing", seed)).mean() for seed in (SEED, SEED + 1, SEED + 2)}
    assert error[SEED] < 20 and error[SEED] < 0.5 * min(error[SEED + 1], error[SEED + 2]), error


def test_mp4_from_a_transfer_directory_adds_to_the_index(tiny_run):
    runs = tiny_run / "runs"
    out = runs / NAME / "video"
    before = read_jsonl(out / "episodes.jsonl") if (out / "episodes.jsonl").exists() else []
    check_ok(
        run_cli(
            "video",
            str(runs / NAME / "transfer"),
            "experiment=quick",
            *DOMAINS,
            "video.domains=[heldout_pairing]",
            "video.format=mp4",
            "video.fps=5",
            cwd=tiny_run,
            timeout=300,
        )
    )
    rows = read_jsonl(out / "episodes.jsonl")
    assert rows[: len(before)] == before  # the GIFs' lines are kept
    [row] = rows[len(before) :]
    assert (row["domain"], row["seed"], row["file"]) == ("heldout_pairing", SEED, "heldout_pairing_seed100000.mp4")
    capture = cv2.VideoCapture(str(out / row["file"]))
    frames = []
    ok, frame = capture.read()
    while ok:
        frames.append(frame)
        ok, frame = capture.read()
    assert capture.get(cv2.CAP_PROP_FPS) == 5
    capture.release()
    assert len(frames) == row["length"] + 1 and frames[0].shape == (64 * SCALE + CAPTION, 64 * SCALE, 3)
    assert (out / ".hydra").is_dir()  # Hydra's own files went to the run's video directory too
    assert not any(p.name.startswith(".") and p.suffix == ".tmp" for p in out.iterdir())


@pytest.mark.parametrize(
    "override, message",
    [
        ("video.format=webm", "video.format='webm' is not allowed: expected one of gif, mp4"),
        ("video.episodes=0", "video.episodes=0 is not allowed: expected an integer >= 1"),
        ("video.domains=[nowhere]", "video domains ['nowhere'] are not defined"),
        ("video.run=no_such_run", "no finished act run found for 'no_such_run'"),
    ],
)
def test_bad_options_are_refused_before_anything_is_written(tiny_run, override, message):
    runs = tiny_run / "runs"
    cfg = compose_cfg("video", [f"runs_dir={runs}", "experiment=quick", f"name={NAME}", *DOMAINS, override])
    with pytest.raises((ValueError, FileNotFoundError), match=re.escape(message)):
        video.run(cfg)
    assert not (runs / NAME / "video" / "nowhere_seed100000.gif").exists()
