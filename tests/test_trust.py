"""A run directory is data: nothing named in a manifest is imported, built or called unless the
user made it available, and a manifest edited after the run is refused."""

from __future__ import annotations

import pickle
import re

import pytest

from conftest import QUICK_NAME, copy_run, output, reseal, run_cli, snapshot
from darla import trust
from darla.artifacts import MANIFEST, read_json, write_json
from darla.errors import UserError
from vision_models.base import VisionModel


class Marker:
    """Unpickling this creates ``path``: proof that a pickle was loaded."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def reseal_with(stage_dir, manifest):
    """What an attacker can do too: write an edited manifest and recompute its (unkeyed) content hash."""
    write_json(stage_dir / MANIFEST, manifest)
    reseal(stage_dir)


def crafted_targets(tmp_path):
    marker = tmp_path / "PWNED"
    payload = tmp_path / "payload.pkl"
    payload.write_bytes(pickle.dumps(Marker(str(marker))))
    module_dir = tmp_path / "evil_pkg"
    module_dir.mkdir()
    (module_dir / "evil_module.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    return marker, {
        "torch.load": {"_target_": "torch.load", "f": str(payload), "weights_only": False},
        "builtins.open": {"_target_": "builtins.open", "file": str(marker), "mode": "w"},
        "subprocess.run": {"_target_": "subprocess.run", "args": ["touch", str(marker)]},
        "importlib.import_module": {"_target_": "importlib.import_module", "name": "evil_module"},
    }


@pytest.mark.parametrize("target", ["torch.load", "builtins.open", "subprocess.run", "importlib.import_module"])
@pytest.mark.parametrize("where", ["vision_model", "dae", "factor_dataset"])
def test_a_crafted_manifest_executes_nothing_and_is_refused(quick_run, tmp_path, target, where):
    runs = tmp_path / "runs"
    run = copy_run(quick_run, runs, QUICK_NAME, stages=("see",))
    marker, specs = crafted_targets(tmp_path)
    manifest = read_json(run / "see" / MANIFEST)
    if where == "factor_dataset":
        manifest["factor_dataset"] = specs[target]
    elif where == "dae":
        manifest["pretrained"]["dae"]["model"] = specs[target]
    else:
        manifest[where]["model"] = specs[target]
    reseal_with(run / "see", manifest)
    before = snapshot(run)
    stage = (
        ["diagnose", str(run / "see")]
        if where == "factor_dataset"
        else ["act", "experiment=quick", f"act.see_run={run / 'see'}", "vec_env=dummy"]
    )
    env = {"PYTHONPATH": str(tmp_path / "evil_pkg")}  # the evil module would be importable
    proc = run_cli(*stage, f"runs_dir={runs}", cwd=tmp_path, timeout=180, env=env)
    text = output(proc)
    assert proc.returncode != 0, text
    assert not marker.exists(), "the crafted manifest ran code"
    assert "Traceback" not in text
    assert f"{run / 'see' / MANIFEST}: " in text and f"._target_ '{target}' is refused" in text, text
    assert snapshot(run) == before


def test_an_edited_manifest_is_refused_by_its_content_hash(quick_run, tmp_path):
    runs = tmp_path / "runs"
    run = copy_run(quick_run, runs, QUICK_NAME, stages=("see",))
    manifest = read_json(run / "see" / MANIFEST)
    manifest["vision_model"]["model"]["beta"] = 99.0
    write_json(run / "see" / MANIFEST, manifest)
    proc = run_cli(
        "act",
        "experiment=quick",
        f"act.see_run={run / 'see'}",
        f"runs_dir={runs}",
        "vec_env=dummy",
        cwd=tmp_path,
        timeout=180,
    )
    assert proc.returncode == 2 and "Traceback" not in output(proc)
    see = run / "see"
    assert (
        f"{see / MANIFEST}, {see / 'dae.safetensors'}, {see / 'vision_model.safetensors'} do not match the "
        f"content hash recorded in the manifest"
    ) in proc.stderr
    assert not (runs / QUICK_NAME / "act" / "config.json").exists()


def test_the_manifests_latent_dim_is_checked(quick_run, tmp_path):
    runs = tmp_path / "runs"
    run = copy_run(quick_run, runs, QUICK_NAME, stages=("see",))
    manifest = read_json(run / "see" / MANIFEST)
    manifest["latent_dim"] = 7
    reseal_with(run / "see", manifest)
    from darla.runs import load_vision_model

    with pytest.raises(UserError, match=r"latent_dim is 7 but the model it names has 32 latents"):
        load_vision_model(run / "see")


def test_parents_from_another_env_or_other_domains_are_refused(quick_run, tmp_path):
    runs = tmp_path / "runs"
    run = copy_run(quick_run, runs, QUICK_NAME, stages=("see", "act"))
    # transfer on other source domains than the policy was trained on
    proc = run_cli(
        "transfer",
        "experiment=quick",
        f"runs_dir={runs}",
        "vec_env=dummy",
        "env.source=[hat_can_default,cake_balloon_default]",
        cwd=tmp_path,
        timeout=180,
    )
    assert proc.returncode == 2 and "Traceback" not in output(proc)
    assert (
        f"parent {run / 'act'} has source_domains ['hat_can_default', 'cake_balloon_default', "
        f"'cake_balloon_alternative']; this stage has ['hat_can_default', 'cake_balloon_default']"
    ) in proc.stderr
    # a see run made on another env (its manifest says so) is refused by act
    manifest = read_json(run / "see" / MANIFEST)
    manifest["env_id"], manifest["env_name"] = "MyPixelsEnv-v0", "my_env"
    reseal_with(run / "see", manifest)
    proc = run_cli(
        "act",
        "experiment=quick",
        f"runs_dir={runs}",
        "name=other",
        f"act.see_run={run / 'see'}",
        "vec_env=dummy",
        cwd=tmp_path,
        timeout=180,
    )
    assert proc.returncode == 2 and "Traceback" not in output(proc)
    assert (
        f"parent {run / 'see'} was made on env 'MyPixelsEnv-v0' (my_env); this stage runs env "
        f"'darla/CollectGoodObjects-v0' (collect_good_objects)"
    ) in proc.stderr
    assert not (runs / "other" / "act" / "config.json").exists()


class TinyModel(VisionModel):
    pass


def test_build_recorded_builds_only_classes_of_allowed_modules(tmp_path):
    source = tmp_path / MANIFEST
    built = trust.build_recorded(
        {"_target_": "vision_models.beta_vae.BetaVAE", "latent_dim": 3}, VisionModel, "vision_model.model", source
    )
    assert built.latent_dim == 3
    refusals = {
        "a function of an allowed module": {"_target_": "vision_models.base.reparameterize"},
        "a class of another kind": {"_target_": "envs.domains.Domain", "name": "x", "env_id": "y"},
        "a module outside the allowed ones": {"_target_": "torch.nn.Linear", "in_features": 1, "out_features": 1},
        "a nested target": {
            "_target_": "vision_models.beta_vae.BetaVAE",
            "input_shape": {"_target_": "builtins.open", "file": str(tmp_path / "x")},
        },
        "Hydra's own keys": {"_target_": "vision_models.beta_vae.BetaVAE", "_args_": [1]},
        "a relative or odd path": {"_target_": "..vision_models.beta_vae.BetaVAE"},
    }
    for what, spec in refusals.items():
        with pytest.raises(UserError, match=re.escape(str(source))):
            trust.build_recorded(spec, VisionModel, "vision_model.model", source)
    assert not (tmp_path / "x").exists()
    # A user's own package is allowed once named (trusted_modules, or a _target_ of the config).
    spec = {"_target_": f"{__name__}.TinyModel", "latent_dim": 2}
    with pytest.raises(UserError, match="is refused"):
        trust.build_recorded(spec, VisionModel, "vision_model.model", source)
    assert (
        trust.build_recorded(
            spec, VisionModel, "vision_model.model", source, allowed=[*trust.BUILT_IN, __name__]
        ).latent_dim
        == 2
    )


def test_the_config_makes_its_own_targets_and_trusted_modules_available():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        {"vision_model": {"model": {"_target_": "my_models.LinearVAE"}}, "trusted_modules": ["lab_models"]}
    )
    assert trust.config_modules(cfg) == {"my_models", "lab_models"}
