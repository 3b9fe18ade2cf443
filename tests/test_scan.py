"""SCAN (darla/scan.py, vision_models/scan.py): its loss terms, its symbols and operators, the held-out
pairing kept out of its training, and the stage through the command line on the quick see run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import check_ok, output, run_cli
from darla.artifacts import read_json, read_manifest, read_npz
from darla.errors import UserError
from darla.scan import check_posterior, draw_pairs, recombination_triples
from vision_models.base import gaussian_kl
from vision_models.random_cnn import RandomCNN
from vision_models.scan import UNNAMED, FactorJudge, Recombination, SymbolSpace, SymbolVAE, forward_kl

# CollectGoodObjects' symbol factors: object_set (hat_can, cake_balloon) x room_style (5 rooms).
SPACE = SymbolSpace(
    ["object_set", "room_style"],
    [2, 5],
    [["hat_can", "cake_balloon"], ["default", "alternative", "concrete", "cinder", "stucco"]],
)
HAT_CAN, ALTERNATIVE = 0, 1
HELDOUT = (HAT_CAN, ALTERNATIVE)


def test_forward_kl_by_hand():
    # q(z_x|x) = N(0.5, 0.25), q(z_y|y) = N(-1, 4): 0.5 * (ln(4 / 0.25) + (0.25 + 1.5^2) / 4 - 1)
    mean_x, logvar_x = torch.tensor([[0.5]]), torch.tensor([[math.log(0.25)]])
    mean_y, logvar_y = torch.tensor([[-1.0]]), torch.tensor([[math.log(4.0)]])
    by_hand = 0.5 * (math.log(16.0) + (0.25 + 2.25) / 4.0 - 1.0)
    assert forward_kl(mean_x, logvar_x, mean_y, logvar_y).item() == pytest.approx(by_hand, rel=1e-6)
    # It is the forward direction, KL(visual || symbol): the reverse is another number.
    assert forward_kl(mean_y, logvar_y, mean_x, logvar_x).item() != pytest.approx(by_hand, rel=1e-3)
    # torch's own KL is the reference, per dimension, on random Gaussians; N(0, 1) gives the prior KL.
    g = torch.Generator().manual_seed(0)
    m1, l1, m2, l2 = (torch.randn(5, 3, generator=g) for _ in range(4))
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(m1, (0.5 * l1).exp()), torch.distributions.Normal(m2, (0.5 * l2).exp())
    )
    torch.testing.assert_close(forward_kl(m1, l1, m2, l2), reference)
    torch.testing.assert_close(forward_kl(m1, l1, torch.zeros(5, 3), torch.zeros(5, 3)), gaussian_kl(m1, l1))
    assert forward_kl(m1, l1, m1, l1).abs().max().item() < 1e-6


def test_forward_kl_keeps_an_unnamed_latent_broad():
    """Images of one symbol differ in a latent it does not name (visual posteriors N(±1, 0.01)): the
    symbol posterior that minimises the mean forward KL covers both (std ≈ 1, the prior's breadth)."""
    mean_x, logvar_x = torch.tensor([[-1.0], [1.0]]), torch.full((2, 1), math.log(0.01))
    stds = torch.linspace(0.05, 3.0, 300)
    costs = [forward_kl(mean_x, logvar_x, torch.zeros(2, 1), torch.full((2, 1), 2 * math.log(s))).mean() for s in stds]
    best = stds[int(torch.stack(costs).argmin())].item()
    assert best == pytest.approx(math.sqrt(1.01), abs=0.02)


def test_symbol_vae_loss_is_its_three_terms():
    torch.manual_seed(0)
    vae = SymbolVAE(SPACE.size, latent_dim=4, hidden=16, beta=2.0, forward_kl_weight=10.0)
    y = torch.from_numpy(SPACE.khot(np.array([[HAT_CAN, UNNAMED], [1, 3]])))
    mean_x, logvar_x = torch.randn(2, 4), torch.randn(2, 4)
    torch.manual_seed(1)
    total, terms = vae.loss(y, mean_x, logvar_x)
    mean_y, logvar_y = vae.encode(y)
    assert terms["prior_kl"] == pytest.approx(gaussian_kl(mean_y, logvar_y).sum(1).mean().item(), rel=1e-5)
    assert terms["forward_kl"] == pytest.approx(
        forward_kl(mean_x, logvar_x, mean_y, logvar_y).sum(1).mean().item(), rel=1e-5
    )
    expected = terms["reconstruction"] + 2.0 * terms["prior_kl"] + 10.0 * terms["forward_kl"]
    assert total.item() == pytest.approx(expected, rel=1e-5)
    total.backward()  # every part of the loss reaches the encoder
    assert vae.encoder[0].weight.grad.abs().sum() > 0
    # The recombination module and the judge give what their callers expect.
    mean, logvar = Recombination(8)(mean_y, logvar_y, mean_y, logvar_y, torch.tensor([0, 2]))
    assert mean.shape == logvar.shape == (2, 4)
    assert FactorJudge([2, 5, 3]).predict(torch.rand(2, 3, 64, 64)).shape == (2, 3)


def test_symbols_and_operators():
    hat_can, alternative, hat_can_default = (
        np.array([HAT_CAN, UNNAMED]),
        np.array([UNNAMED, ALTERNATIVE]),
        np.array([HAT_CAN, 0]),
    )
    assert SPACE.khot(hat_can).tolist() == [[1, 0, 0, 0, 0, 0, 0]]
    assert SPACE.khot(np.array(HELDOUT)).tolist() == [[1, 0, 0, 1, 0, 0, 0]]
    assert SPACE.name(HELDOUT) == "hat_can + alternative" and SPACE.name(alternative) == "alternative"
    assert len(SPACE.all_symbols()) == 2 + 5 + 2 * 5
    assert tuple(SPACE.combine("AND", hat_can, alternative)) == HELDOUT
    assert SPACE.combine("AND", hat_can, np.array([1, UNNAMED])) is None  # two object sets at once
    assert tuple(SPACE.combine("IN_COMMON", hat_can_default, np.array(HELDOUT))) == (HAT_CAN, UNNAMED)
    assert SPACE.combine("IN_COMMON", hat_can, alternative) is None  # nothing in common
    assert tuple(SPACE.combine("IGNORE", hat_can_default, np.array([UNNAMED, 0]))) == (HAT_CAN, UNNAMED)
    assert SPACE.combine("IGNORE", hat_can_default, alternative) is None  # alternative is not named by it
    assert SPACE.blocks(SPACE.khot(np.array([[1, 4]]))).tolist() == [[1, 4]]


def test_training_pairs_come_from_allowed_points_only():
    """draw_pairs only pairs a training point with its own values: with the held-out pairing out of the
    training points, neither its frames nor its symbol are ever drawn, in many draws."""
    values = np.array([(o, r) for o in range(2) for r in range(5) for _ in range(8)])
    allowed = ~((values[:, 0] == HAT_CAN) & (values[:, 1] == ALTERNATIVE))
    rng = np.random.default_rng(0)
    rows, symbols = draw_pairs(np.flatnonzero(allowed), values, 20_000, rng)
    assert allowed[rows].all()
    assert not any(tuple(s) == HELDOUT for s in symbols)
    assert {tuple(s) for s in symbols} == {tuple(s) for s in SPACE.all_symbols()} - {HELDOUT}
    # Recombination trains on no triple that touches the held-out symbol; AND of its parts is held out.
    triples = recombination_triples(SPACE, list(SPACE.all_symbols()), {HELDOUT})
    assert all(HELDOUT not in {tuple(a), tuple(b), tuple(r)} for a, _, b, r in triples["train"])
    assert any(op == "AND" and tuple(r) == HELDOUT for _, op, _, r in triples["heldout"])


def test_a_model_without_posterior_is_refused(tmp_path):
    with pytest.raises(UserError, match="random_cnn.*needs a model with a Gaussian posterior and a decoder"):
        check_posterior(RandomCNN(latent_dim=4), tmp_path, {"vision_model": {"name": "random_cnn"}})


TINY = (
    "scan.points_per_combination=4",
    "scan.test_fraction=0.25",
    "scan.train.steps=30",
    "scan.recombination.steps=10",
    "scan.recombination.eval_triples=2",
    "scan.judge.steps=10",
    "scan.samples=8",
    "scan.log_every=10",
)


@pytest.fixture(scope="module")
def scan_run(quick_run, tmp_path_factory):
    """The scan stage at a tiny budget on the shared quick see run, written outside it (scan.out)."""
    out = tmp_path_factory.mktemp("scan") / "quick_scan"
    proc = check_ok(run_cli("scan", f"see_run={quick_run.see}", f"scan.out={out}", *TINY, cwd=out.parent))
    return out, proc


def test_scan_stage_writes_its_outputs(scan_run, quick_run):
    out, proc = scan_run
    assert "[scan] done" in output(proc)
    for name in ("sym2img.png", "recombination.png", "scan_accuracy.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert (out / "scan_accuracy.pdf").is_file() and (out / "scan.log").is_file()
    assert not (quick_run.run / "scan").exists()  # scan.out chose where it went
    manifest = read_manifest(out, "scan")  # its content hash covers weights and scan.json
    assert manifest["symbol_factors"] == ["object_set", "room_style"] and manifest["symbol_size"] == 7
    report = read_json(out / "scan.json")
    assert set(report["img2sym"]) == {"train", "test", "heldout"}
    for split in ("train", "test", "heldout"):
        assert set(report["img2sym"][split]) == {"frames", "object_set", "room_style"}
        assert 0 <= report["img2sym"][split]["object_set"] <= 1
    assert report["img2sym"]["heldout"]["frames"] == 4  # the held-out pairing's frames: evaluated only
    for split in ("trained_symbols", "heldout_symbols"):
        assert {"count", "accuracy", "exact", "diversity"} <= set(report["sym2img"][split])
    assert report["sym2img"]["heldout_symbols"]["count"] == 1
    held_out = report["sym2img"]["per_symbol"]["hat_can + alternative"]
    assert held_out["heldout"] and set(held_out["diversity_per_factor"]) == {
        "agent_x",
        "agent_z",
        "agent_dir",
        "layout",
    }
    assert set(report["recombination"]) == {"AND", "IN_COMMON", "IGNORE"}
    assert report["recombination"]["AND"]["heldout"]["count"] >= 1
    assert {"chance", "judge_on_frames", "judge_on_reconstructions", "prior_samples"} <= set(report["references"])
    # A second run with the same settings has nothing to do.
    again = check_ok(run_cli("scan", f"see_run={quick_run.see}", f"scan.out={out}", *TINY, cwd=out.parent))
    assert "nothing to do" in output(again)


def test_heldout_pairing_never_reaches_scan_training(scan_run):
    """What the stage actually trained on (training_data.npz): no frame and no symbol of hat_can x alternative."""
    out, _ = scan_run
    data = read_npz(out / "training_data.npz")
    factors, symbols = data["factors"], data["symbols"]
    assert len(factors) > 0 and len(symbols) > 0
    assert not ((factors[:, 0] == HAT_CAN) & (factors[:, 1] == ALTERNATIVE)).any()
    assert not any(tuple(s) == HELDOUT for s in symbols)
    assert not (SPACE.khot(symbols) == SPACE.khot(np.array(HELDOUT))).all(axis=1).any()
    report = read_json(out / "scan.json")
    assert report["symbols"]["heldout"] == ["hat_can + alternative"]
    assert "hat_can + alternative" not in report["training_symbols"]
    assert "hat_can" in report["training_symbols"] and "alternative" in report["training_symbols"]


def test_bad_scan_settings_are_refused_in_one_line(quick_run, tmp_path):
    proc = run_cli("scan", "scan.test_fraction=2", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == ["darla scan: error: scan.test_fraction=2 is not allowed: expected a finite number >= 0 and <= 0.9"]
    proc = run_cli(
        "scan", f"see_run={quick_run.see}", f"scan.out={tmp_path / 'scan'}", "scan.factors=[colour]", cwd=tmp_path
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "scan.factors=['colour'] is not allowed" in line and "object_set" in line
    assert not (tmp_path / "scan").exists()
