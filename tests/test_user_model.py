"""The README's "Your own vision model" example, run exactly as written (at the quick budget)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap

from conftest import QUICK_TARGETS, REPO, check_ok

README = (REPO / "README.md").read_text()


def indented_block_after(marker: str) -> str:
    """The 4-space indented block that follows the README line ending with ``marker``."""
    start = README.index(marker + "\n")
    lines = README[start:].split("\n")[1:]
    block = []
    for line in lines:
        if line.startswith("    ") or line == "":
            block.append(line)
        else:
            break
    while block and block[0] == "":
        block.pop(0)
    while block and block[-1] == "":
        block.pop()
    return textwrap.dedent("\n".join(block)) + "\n"


def test_readme_user_model_runs_through_every_stage(tmp_path):
    (tmp_path / "my_models.py").write_text(indented_block_after("`my_models.py`:"))
    (tmp_path / "my_configs" / "vision_model").mkdir(parents=True)
    (tmp_path / "my_configs" / "vision_model" / "linear_vae.yaml").write_text(
        indented_block_after("`my_configs/vision_model/linear_vae.yaml`:")
    )
    command = re.search(r"^    (PYTHONPATH=\. python -m darla\.stage .*)$", README, re.M).group(1)
    env_prefix, *argv = shlex.split(command)
    assert env_prefix == "PYTHONPATH=." and argv[:3] == ["python", "-m", "darla.stage"]

    runs = tmp_path / "runs"
    extra = ["experiment=quick", f"runs_dir={runs}", QUICK_TARGETS]
    proc = subprocess.run(
        [sys.executable, *argv[1:], *extra],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": str(tmp_path), "PYTHONUNBUFFERED": "1"},
    )
    check_ok(proc)
    run = runs / "quick_linear_vae"
    see_manifest = (run / "see" / "manifest.json").read_text()
    assert '"_target_": "my_models.LinearVAE"' in see_manifest and '"latent_dim": 8' in see_manifest
    assert (run / "act" / "policy.safetensors").exists()
    assert (run / "transfer" / "summary.json").exists()
