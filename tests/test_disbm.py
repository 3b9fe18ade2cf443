"""DisBM: the energy and its conditionals, shapes, CD training, the correspondence term, the see stage."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from safetensors.torch import load_file, save_file

from conftest import REPO, check_ok, compose_cfg, run_cli
from darla.artifacts import read_json
from darla.vision_training import FactorBatches
from envs.dsprites import DSprites
from vision_models.disbm import DisBM

torch.set_num_threads(1)

SHAPE = (1, 64, 64)


def small_model(seed: int = 0, **kwargs) -> DisBM:
    torch.manual_seed(seed)
    settings = dict(latent_dim=10, num_factors=3, factors=32)
    return DisBM(SHAPE, **{**settings, **kwargs}).double()


def sweeps(seed: int, kind: str = "factor_sweeps"):
    """A deterministic stream of dSprites batches (as the see stage draws them)."""
    batches, generator = FactorBatches(DSprites(), kind), torch.Generator().manual_seed(seed)
    return lambda n: batches(n, generator, "cpu")


def test_groups_split_the_units_and_the_interface_shapes():
    model = DisBM((3, 64, 64), latent_dim=32, num_factors=6, factors=16)
    assert [sl.stop - sl.start for sl in model.group_slices] == [6, 6, 5, 5, 5, 5]
    assert model.batches == "factor_sweeps"
    x = torch.rand(4, 3, 64, 64)
    mean, logvar = model.encode(x)
    assert logvar is None and mean.shape == (4, 32) and 0 <= mean.min() and mean.max() <= 1
    assert model.decode(mean).shape == x.shape
    recon = model.reconstruct(x)
    assert recon.shape == x.shape and 0 <= recon.min() and recon.max() <= 1
    assert model.kl_per_dim(x).shape == (32,)
    assert torch.equal(model.representation(x), model.representation(x))
    total, terms = model.loss((x, 2), step=0)
    assert set(terms) == {"reconstruction", "free_energy_gap", "correspondence", "total"}
    assert total.dim() == 0 and terms["total"] == pytest.approx(total.item())
    with pytest.raises(ValueError, match="num_factors"):
        model.loss((x, 6), step=0)
    with pytest.raises(ValueError, match="latent_dim"):
        DisBM(SHAPE, latent_dim=4, num_factors=5)
    with pytest.raises(ValueError, match="cd_steps"):
        DisBM(SHAPE, latent_dim=10, num_factors=5, cd_steps=0)


def test_conditionals_follow_from_the_energy():
    """Mean-field and Gibbs use p(h_gj = 1 | v, rest) = sigmoid(E(h_gj = 0) - E(h_gj = 1)); E[v | h] minimises E."""
    model = small_model(1, init_scale=0.3)
    with torch.no_grad():  # weights large enough that the three-way term matters
        model.hidden_factors.mul_(10)
    g = torch.Generator().manual_seed(0)
    v = torch.rand(5, 4096, generator=g, dtype=torch.float64)
    h = torch.bernoulli(torch.full((5, 10), 0.5, dtype=torch.float64), generator=g)
    scaled = v / model.sigma
    products = model._group_products(h)
    for group, sl in enumerate(model.group_slices):
        logits = model._group_input(group, scaled @ model.visible_factors, scaled @ model.pairwise, products)
        for j in range(sl.start, sl.stop):
            on, off = h.clone(), h.clone()
            on[:, j], off[:, j] = 1, 0
            expected = model.energy(v, off) - model.energy(v, on)
            assert torch.allclose(logits[:, j - sl.start], expected, atol=1e-8)
    assert model._group_input(0, scaled @ model.visible_factors, scaled @ model.pairwise, products).abs().max() > 1
    mean = model.visible_mean(h).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(model.energy(mean, h).sum(), mean)
    assert grad.abs().max() < 1e-8


def test_two_groups_give_the_papers_three_way_term():
    """With G = 2 the higher-order energy is sum_f (v W_f)(m U_f)(h U'_f), as in Reed et al."""
    model = small_model(2, num_factors=2, init_scale=0.2)
    g = torch.Generator().manual_seed(1)
    v = torch.rand(3, 4096, generator=g, dtype=torch.float64)
    h = torch.rand(3, 10, generator=g, dtype=torch.float64)
    m_part, h_part = model.group_slices
    W, U = model.visible_factors.detach(), model.hidden_factors.detach()
    three_way = torch.einsum(
        "ni,if,nj,jf,nk,kf->n", v / model.sigma, W, h[:, m_part], U[m_part], h[:, h_part], U[h_part]
    )
    without_three_way = model.energy(v, h).detach()
    with torch.no_grad():
        model.visible_factors.zero_()
    assert torch.allclose(without_three_way, model.energy(v, h) - three_way, atol=1e-9)


def test_mean_field_is_a_fixed_point():
    model = small_model(3, init_scale=0.05)
    v = torch.rand(4, 4096, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        mu = model.mean_field(v, steps=50)
        scaled = v / model.sigma
        products = model._group_products(mu)
        for group, sl in enumerate(model.group_slices):
            update = torch.sigmoid(
                model._group_input(group, scaled @ model.visible_factors, scaled @ model.pairwise, products)
            )
            assert torch.allclose(update, mu[:, sl], atol=1e-6)


def test_cd_training_lowers_the_reconstruction_error_on_a_fixed_batch():
    model = small_model(4, latent_dim=30, num_factors=5, factors=64).float()
    optimizers = model.configure_optimizers(2e-3)
    images = sweeps(99, "images")(64)
    fixed = images.flatten(1)
    mean_image_error = (fixed - fixed.mean(0)).pow(2).sum(1).mean().item()

    def error() -> float:  # in frame space: the centre (set by the first training batch) added back
        with torch.no_grad():
            v = model.centred(images)
            return (model.visible_mean(model.mean_field(v)) + model.centre - fixed).pow(2).sum(1).mean().item()

    before = error()
    draw = sweeps(0)
    for step in range(150):
        terms = model.training_step(draw(32), step, optimizers)
        assert all(np.isfinite(list(terms.values())))
    after = error()
    # The untrained model does worse than the mean image; CD must take it below both, by a margin.
    assert after < 0.8 * before and after < 0.9 * mean_image_error, (before, after, mean_image_error)


def test_correspondence_pulls_the_shared_groups_together():
    """The same CD training with and without the term: on held-out sweeps the groups of the factors a batch
    shares agree far better with it, while the group of the factor that varies is not the one pulled."""

    def train(weight: float) -> DisBM:
        model = small_model(5, latent_dim=30, num_factors=5, factors=64, correspondence_weight=weight).float()
        optimizers, draw = model.configure_optimizers(1e-3), sweeps(1)
        for step in range(100):
            model.training_step(draw(32), step, optimizers)
        return model

    def spreads(model: DisBM) -> tuple[float, float]:
        """Mean over held-out sweeps of the correspondence (shared groups) and the varying group's spread."""
        draw, shared, varying = sweeps(7), [], []
        with torch.no_grad():
            for _ in range(20):
                images, factor = draw(32)
                mu = model.encode(images)[0]
                shared.append(model.correspondence(mu, factor).item())
                varying.append(2 * model.group_codes(mu, factor).var(0, unbiased=False).sum().item())
        return float(np.mean(shared)), float(np.mean(varying))

    free_shared, _ = spreads(train(0.0))
    pulled_shared, pulled_varying = spreads(train(20.0))
    assert pulled_shared < 0.5 * free_shared, (pulled_shared, free_shared)
    # Per unit, the varying factor's group keeps more spread than the groups the term pulls.
    assert pulled_varying / 6 > pulled_shared / 24, (pulled_varying, pulled_shared)


def test_correspondence_is_the_mean_pairwise_distance_of_the_shared_groups():
    model = small_model(6)
    mu = torch.rand(7, 10, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    shared = [j for j in range(10) if j not in range(*model.group_slices[1].indices(10))]
    pairs = [((mu[a, shared] - mu[b, shared]) ** 2).sum() for a in range(7) for b in range(7)]
    assert model.correspondence(mu, 1).item() == pytest.approx(torch.stack(pairs).mean().item(), rel=1e-10)


def test_persistent_chains_advance_and_are_checkpointed(tmp_path):
    model = small_model(7, num_factors=5, persistent_chains=8).float()
    optimizers, draw = model.configure_optimizers(1e-3), sweeps(2)
    model.training_step(draw(16), 0, optimizers)
    first = model.chains.clone()
    assert int(model.chains_started) == 1 and first.abs().sum() > 0
    model.training_step(draw(16), 1, optimizers)
    assert not torch.equal(first, model.chains)
    save_file(model.state_dict(), tmp_path / "w.safetensors")
    again = small_model(8, num_factors=5, persistent_chains=8).float()
    again.load_state_dict(load_file(tmp_path / "w.safetensors"))
    assert torch.equal(again.chains, model.chains) and int(again.chains_started) == 1


def test_yaml_builds_the_model_with_the_datasets_factor_count():
    cfg = compose_cfg("see", ["vision_model=disbm", "env=dsprites", "vision_model.model.num_factors=5"])
    model = instantiate(cfg.vision_model.model)
    assert isinstance(model, DisBM) and model.input_shape == SHAPE and model.latent_dim == 50
    assert len(model.group_slices) == 5


def test_disbm_goes_through_the_see_stage_on_dsprites(tmp_path):
    runs = tmp_path / "runs"
    check_ok(
        run_cli("see", "experiment=quick_dsprites", "vision_model=disbm", f"runs_dir={runs}", cwd=tmp_path, timeout=600)
    )
    see = runs / "quick_dsprites_disbm" / "see"
    manifest = read_json(see / "manifest.json")
    assert manifest["vision_model"]["model"]["num_factors"] == 5 and manifest["latent_dim"] == 50
    metrics = read_json(see / "metrics.json")
    assert set(metrics["metrics"]) == {p.stem for p in REPO.glob("configs/metric/*.yaml")}
    assert "skipped" in metrics["metrics"]["sampled_mig"]  # deterministic: no posterior variance
    for name in ("mig", "factor_vae_score", "dci"):
        assert all(v == v for v in metrics["metrics"][name].values())
    assert {"reconstructions.png", "traversals.png", "kl_per_dim.png"} <= {p.name for p in see.iterdir()}


def test_bright_colour_frames_do_not_turn_every_unit_on():
    """Regression: uncentred, bright frames drove all hidden means to 1 within a few Adam steps (CollectGoodObjects)."""
    torch.manual_seed(0)
    model = DisBM((3, 64, 64), latent_dim=50, num_factors=2, factors=32)
    optimizers = model.configure_optimizers(1e-3)
    rng = np.random.default_rng(0)
    room = torch.tensor(0.55 + 0.1 * rng.random((3, 64, 64)), dtype=torch.float32)

    def batch(n: int = 32):  # a bright room with a coloured box at random places: a factor sweep of its x
        images = room.expand(n, -1, -1, -1).clone()
        for i, x in enumerate(rng.integers(0, 48, n)):
            images[i, :, 40:56, x : x + 16] = torch.tensor([0.1, 0.9, 0.6])[:, None, None]
        return images, 0

    for step in range(10):
        model.training_step(batch(), step, optimizers)
    with torch.no_grad():
        images, _ = batch(128)
        means = model.encode(images)[0]
    assert (means.mean(0) > 0.99).float().mean() < 0.5, means.mean(0)
    assert means.std(0).mean() > 0.02, means.std(0)
