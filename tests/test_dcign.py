"""DC-IGN: the clamp and its invariance gradient, the latent layout, the loss terms, training on factor sweeps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.utils import get_class, instantiate

from conftest import compose_cfg
from darla.latent_env import frames_to_tensor
from darla.vision_training import FactorBatches, train_vision
from envs.factor_dataset import FactorDataset, sweep_factors, uniform_factors
from vision_models.dcign import DCIGN, clamp_inactive_latents

torch.set_num_threads(1)  # small convs gain little from more; other suites share the 2 cores

SHAPE = (3, 64, 64)


class Squares:
    """A tiny factor dataset: one coloured square on black; its column, row, size and colour are the factors."""

    factor_names = ("column", "row", "size", "colour")
    factor_sizes = (4, 4, 3, 3)
    image_shape = (64, 64, 3)
    colours = np.array([[255, 40, 40], [40, 255, 40], [60, 60, 255]], np.uint8)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return uniform_factors(self.factor_sizes, n, rng)

    def render(self, factors: np.ndarray) -> np.ndarray:
        images = np.zeros((len(factors), *self.image_shape), np.uint8)
        for image, (column, row, size, colour) in zip(images, factors):
            side = 10 + 6 * size
            top, left = 2 + 12 * row, 2 + 12 * column
            image[top : top + side, left : left + side] = self.colours[colour]
        return images


def sweep_batch(dataset, n: int, factor: int, seed: int) -> tuple[torch.Tensor, int]:
    rng = np.random.default_rng(seed)
    return frames_to_tensor(dataset.render(sweep_factors(dataset, n, factor, rng))), factor


def test_clamp_forward_sets_inactive_columns_to_their_batch_mean():
    latents = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    active = torch.tensor([False, True, False, False, True])
    out = clamp_inactive_latents(latents, active)
    assert torch.equal(out[:, active], latents[:, active])
    column_means = latents.numpy().mean(axis=0)
    for j in np.flatnonzero(~active.numpy()):
        assert np.allclose(out[:, j].numpy(), column_means[j], rtol=0, atol=1e-6)
        assert out[:, j].unique().numel() == 1  # one value for the whole batch


def test_clamp_backward_is_the_scaled_deviation_from_the_batch_mean():
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(6, 4, generator=g, dtype=torch.float64)
    active = torch.tensor([True, False, False, True])
    scale = 0.3
    clamp_inactive_latents(latents, active, scale).backward(upstream)

    x, n = latents.detach().numpy(), len(latents)
    expected = upstream.numpy().copy()  # active columns: the incoming gradient, untouched
    for j in (1, 2):
        column_mean = sum(x[i, j] for i in range(n)) / n
        for i in range(n):
            expected[i, j] = scale * (x[i, j] - column_mean) / n
    assert np.allclose(latents.grad.numpy(), expected, rtol=1e-12, atol=1e-15)
    # The inactive gradient ignores what came from above: it is not the true gradient of the forward pass.
    true_inactive = upstream[:, 1].sum().item() / n
    assert not np.allclose(latents.grad.numpy()[:, 1], true_inactive)


def test_clamp_rejects_bad_shapes():
    with pytest.raises(ValueError, match="bool mask"):
        clamp_inactive_latents(torch.zeros(3, 4), torch.ones(4))  # float mask
    with pytest.raises(ValueError, match="bool mask"):
        clamp_inactive_latents(torch.zeros(3, 4), torch.ones(3, dtype=torch.bool))


def test_latent_layout_and_argument_checks():
    model = DCIGN(SHAPE, latent_dim=10, num_factors=3, latents_per_factor=2)
    assert model.batches == "factor_sweeps"
    assert [list(model.factor_latents(k)) for k in range(3)] == [[0, 1], [2, 3], [4, 5]]
    assert list(model.intrinsic_latents) == [6, 7, 8, 9]
    assert model.active_latents(1).tolist() == [False, False, True, True] + [False] * 6
    with pytest.raises(ValueError, match="num_factors"):
        model.factor_latents(3)
    with pytest.raises(ValueError, match="latent_dim"):
        DCIGN(SHAPE, latent_dim=5, num_factors=3, latents_per_factor=2)
    with pytest.raises(ValueError, match="invariance_scale"):
        DCIGN(SHAPE, latent_dim=5, num_factors=3, invariance_scale=-1.0)
    with pytest.raises(ValueError, match="factor_sweeps"):
        model.loss(torch.rand(2, *SHAPE), step=0)  # plain frames: no factor to sweep


def test_loss_terms_match_an_independent_computation():
    torch.manual_seed(0)
    model = DCIGN(SHAPE, latent_dim=6, num_factors=4, beta=2.0).double()
    images, factor = sweep_batch(Squares(), 8, factor=2, seed=0)
    images = images.double()
    torch.manual_seed(5)
    total, terms = model.loss((images, factor), step=0)

    with torch.no_grad():
        mean, logvar = (t.numpy() for t in model.encode(images))
        inactive = [j for j in range(6) if j != 2]
        clamped_mean, clamped_logvar = mean.copy(), logvar.copy()
        clamped_mean[:, inactive] = mean[:, inactive].mean(axis=0)
        clamped_logvar[:, inactive] = logvar[:, inactive].mean(axis=0)
        torch.manual_seed(5)  # the same reparameterisation noise as inside loss
        noise = torch.randn(8, 6, dtype=torch.float64).numpy()
        z = clamped_mean + np.exp(0.5 * clamped_logvar) * noise
        p = 1 / (1 + np.exp(-model.decode(torch.from_numpy(z)).numpy()))
        t = images.numpy()
        reconstruction = -(t * np.log(p) + (1 - t) * np.log(1 - p)).reshape(8, -1).sum(1).mean()
        kl = (0.5 * (mean**2 + np.exp(logvar) - 1 - logvar)).sum(1).mean()
        spread = ((mean[:, inactive] - mean[:, inactive].mean(0)) ** 2).mean(0).sum()

    assert terms["reconstruction"] == pytest.approx(reconstruction, rel=1e-9)
    assert terms["kl"] == pytest.approx(kl, rel=1e-9)
    assert terms["inactive_spread"] == pytest.approx(spread, rel=1e-9)
    assert total.item() == pytest.approx(reconstruction + 2.0 * kl, rel=1e-9)
    assert terms["total"] == pytest.approx(total.item())


def test_encoder_output_gradients():
    """Active latents: the true gradient of the clamped loss. Inactive: invariance gradient + KL gradient."""
    torch.manual_seed(0)
    scale, beta, factor, n = 0.5, 1.5, 1, 8
    model = DCIGN(SHAPE, latent_dim=5, num_factors=3, invariance_scale=scale, beta=beta).double()
    images = sweep_batch(Squares(), n, factor, seed=3)[0].double()
    captured = {}

    def keep_output(module, inputs, output):
        output.retain_grad()
        captured["encoder_output"] = output

    hook = model.encoder.register_forward_hook(keep_output)
    torch.manual_seed(7)
    model.loss((images, factor), step=0)[0].backward()
    hook.remove()
    grad_mean, grad_logvar = captured["encoder_output"].grad.chunk(2, dim=1)

    # Independent path: the same loss with an ordinary (differentiable) clamp, on leaf copies of the codes.
    with torch.no_grad():
        mean, logvar = model.encode(images)
    mean.requires_grad_(True)
    logvar.requires_grad_(True)
    active = torch.tensor([False, True, False, False, False])
    torch.manual_seed(7)
    noise = torch.randn(n, 5, dtype=torch.float64)
    z = torch.where(active, mean, mean.mean(0)) + torch.exp(0.5 * torch.where(active, logvar, logvar.mean(0))) * noise
    logits = model.decode(z)
    reconstruction = torch.nn.functional.binary_cross_entropy_with_logits(logits, images, reduction="sum") / n
    kl = (0.5 * (mean**2 + logvar.exp() - 1 - logvar)).sum() / n
    (reconstruction + beta * kl).backward()
    assert torch.allclose(grad_mean[:, active], mean.grad[:, active], rtol=1e-9, atol=1e-12)
    assert torch.allclose(grad_logvar[:, active], logvar.grad[:, active], rtol=1e-9, atol=1e-12)

    m, lv = mean.detach()[:, ~active], logvar.detach()[:, ~active]
    expected_mean = scale * (m - m.mean(0)) / n + beta * m / n
    expected_logvar = scale * (lv - lv.mean(0)) / n + beta * 0.5 * (lv.exp() - 1) / n
    assert torch.allclose(grad_mean[:, ~active], expected_mean, rtol=1e-9, atol=1e-15)
    assert torch.allclose(grad_logvar[:, ~active], expected_logvar, rtol=1e-9, atol=1e-15)


def test_representation_is_the_unclamped_encoder_mean():
    model = DCIGN(SHAPE, latent_dim=6, num_factors=4).eval()
    images, _ = sweep_batch(Squares(), 6, factor=0, seed=2)
    codes = model.representation(images)
    assert torch.equal(codes, model.encode(images)[0])
    assert (codes.std(0) > 0).all()  # every latent still varies across a sweep: no clamping at inference


def test_training_on_factor_sweeps_reduces_the_loss(tmp_path):
    dataset = Squares()
    assert isinstance(dataset, FactorDataset)
    torch.manual_seed(0)
    model = DCIGN(SHAPE, latent_dim=6, num_factors=len(dataset.factor_sizes))
    held_out = [sweep_batch(dataset, 16, factor, seed=100 + factor) for factor in range(4)]

    def held_out_loss() -> float:
        torch.manual_seed(123)  # the same sampling noise before and after training
        with torch.no_grad():
            return float(np.mean([model.loss(batch, step=0)[0].item() for batch in held_out]))

    before = held_out_loss()
    train_vision(
        model,
        FactorBatches(dataset, "factor_sweeps"),
        steps=60,
        batch_size=16,
        lr=1e-3,
        checkpoint=tmp_path / "dcign.safetensors",
        seed=0,
        device=torch.device("cpu"),
    )
    after = held_out_loss()
    assert after < 0.5 * before, (before, after)
    assert (tmp_path / "dcign.safetensors").exists()


def test_yaml_instantiates_through_hydra():
    cfg = compose_cfg("see", ["vision_model=dcign"])
    assert cfg.vision_model.name == "dcign" and get_class(cfg.vision_model.model._target_).pretrained == ()
    assert cfg.vision_model.train.batch_size == 64 and cfg.vision_model.train.lr == pytest.approx(1e-4)
    model = instantiate(cfg.vision_model.model)
    assert isinstance(model, DCIGN) and model.batches == "factor_sweeps"
    assert model.input_shape == SHAPE and model.latent_dim == 32
    assert model.invariance_scale == pytest.approx(0.01) and model.beta == 1.0
    dsprites = compose_cfg("see", ["vision_model=dcign", "env=dsprites", "vision_model.model.num_factors=5"])
    overridden = instantiate(dsprites.vision_model.model)
    assert overridden.num_factors == 5 and overridden.input_shape == (1, 64, 64)
