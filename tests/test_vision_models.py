import math

import pytest
import torch
from hydra.utils import get_class, instantiate

from conftest import compose_cfg
from conftest import square_images as images
from vision_models import BetaVAE, BetaVAEDAE, DenoisingAutoencoder, VisionModel, mask_rectangle
from vision_models.base import bernoulli_reconstruction, gaussian_kl

torch.set_num_threads(1)  # small convs gain little from more; other suites share the 2 cores

SHAPE = (3, 64, 64)


def make_dae(seed=0):
    torch.manual_seed(seed)
    return DenoisingAutoencoder(SHAPE, latent_dim=16)


MODELS = {
    "dae": lambda: make_dae(),
    "beta_vae_bernoulli": lambda: BetaVAE(SHAPE, latent_dim=6, beta=4.0),
    "beta_vae_gaussian": lambda: BetaVAE(SHAPE, latent_dim=6, beta=4.0, reconstruction="gaussian"),
    "beta_vae_dae_pre_activation": lambda: BetaVAEDAE(make_dae(), SHAPE, latent_dim=6),
    "beta_vae_dae_bottleneck": lambda: BetaVAEDAE(make_dae(), SHAPE, latent_dim=6, dae_layer="bottleneck"),
}


def test_gaussian_kl_matches_monte_carlo():
    torch.manual_seed(0)
    mean = torch.tensor([[0.0, 1.5, -0.7, 0.3]])
    logvar = torch.tensor([[0.0, -1.0, 0.8, -2.0]])
    z = mean + torch.exp(0.5 * logvar) * torch.randn(200_000, 4)

    def log_normal(v, m, lv):
        return -0.5 * (math.log(2 * math.pi) + lv + (v - m) ** 2 / lv.exp())

    estimate = (log_normal(z, mean, logvar) - log_normal(z, 0.0, torch.zeros(1))).mean(0)
    assert torch.allclose(gaussian_kl(mean, logvar)[0], estimate, atol=0.02)
    assert gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)).abs().max() == 0


def test_bernoulli_reconstruction_matches_manual():
    torch.manual_seed(0)
    logits = 3 * torch.randn(5, *SHAPE)
    target = torch.rand(5, *SHAPE)
    p = 1 / (1 + torch.exp(-logits.double()))
    t = target.double()
    manual = -(t * torch.log(p) + (1 - t) * torch.log(1 - p)).sum(dim=(1, 2, 3)).mean()
    assert bernoulli_reconstruction(logits, target).item() == pytest.approx(manual.item(), rel=1e-5)


def test_mask_rectangle_zeros_one_rectangle():
    x = torch.rand(200, *SHAPE) + 0.5  # no pixel is zero before masking
    masked, mask = mask_rectangle(x, torch.Generator().manual_seed(0), min_frac=0.1, max_frac=0.5, return_mask=True)
    assert masked.shape == x.shape and mask.shape == (200, 1, 64, 64)
    zeroed = (masked == 0).all(dim=1)  # (N, H, W): every channel zeroed together
    assert torch.equal(zeroed, mask[:, 0])
    for img in range(len(x)):
        rows = zeroed[img].any(1).nonzero().flatten()
        cols = zeroed[img].any(0).nonzero().flatten()
        top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        assert zeroed[img, top:bottom, left:right].all()  # the bounding box is filled: one rectangle
        assert zeroed[img].sum() == (bottom - top) * (right - left)
        assert 0.1 <= (bottom - top) / 64 <= 0.5 and 0.1 <= (right - left) / 64 <= 0.5
    outside = ~mask.expand_as(x)
    assert torch.equal(masked[outside], x[outside])
    # the rectangles vary from image to image and come back the same from the same seed
    assert mask.flatten(1).sum(1).unique().numel() > 10
    again = mask_rectangle(x, torch.Generator().manual_seed(0), return_mask=True)[1]
    assert torch.equal(again, mask)


@pytest.mark.parametrize("name", MODELS)
def test_shapes_and_finite_loss(name):
    model = MODELS[name]()
    assert isinstance(model, VisionModel) and model.input_shape == SHAPE
    x = images(4)
    mean, logvar = model.encode(x)
    assert mean.shape == (4, model.latent_dim)
    assert logvar is None if isinstance(model, DenoisingAutoencoder) else logvar.shape == mean.shape
    assert model.decode(mean).shape == x.shape
    recon = model.reconstruct(x)
    assert recon.shape == x.shape and recon.min() >= 0 and recon.max() <= 1
    assert model.kl_per_dim(x).shape == (model.latent_dim,)
    total, terms = model.loss(x, step=0)
    assert total.dim() == 0 and torch.isfinite(total)
    assert terms["total"] == pytest.approx(total.item())
    assert all(isinstance(v, float) for v in terms.values())
    if not isinstance(model, DenoisingAutoencoder):
        assert set(terms) == {"reconstruction", "kl", "total"}


@pytest.mark.parametrize("name", MODELS)
def test_adam_steps_reduce_loss(name):
    model = MODELS[name]()
    x = images(8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def fixed_noise_loss():
        torch.manual_seed(123)  # same sampling / masking noise for the before and after measurement
        return model.loss(x, step=0)[0]

    before = fixed_noise_loss().item()
    for step in range(5):
        loss, _ = model.loss(x, step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert fixed_noise_loss().item() < before


@pytest.mark.parametrize("name", MODELS)
def test_representation_is_deterministic_encoder_mean(name):
    model = MODELS[name]().eval()
    x = images(4)
    first, second = model.representation(x), model.representation(x)
    assert torch.equal(first, second) and not first.requires_grad
    assert torch.equal(first, model.encode(x)[0].detach())


def test_beta_vae_dae_gradients_stop_at_the_dae():
    dae = make_dae()
    model = BetaVAEDAE(dae, SHAPE, latent_dim=6)
    # J is called twice per loss: on x (the target) and on x_hat; record whether each output is in the graph
    needs_grad = []
    dae.decoder.register_forward_hook(lambda module, args, out: needs_grad.append(out.requires_grad))
    x = images(4).requires_grad_(True)  # so J(x) would join the graph if it were not computed as a fixed target
    model.loss(x, step=0)[0].backward()
    assert needs_grad == [False, True]  # J(x) is a fixed target; J(x_hat) carries gradient
    assert all(p.grad is None for p in dae.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.decoder.parameters())
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_beta_vae_dae_keeps_its_frozen_dae_out_of_the_optimiser_and_its_state():
    dae = make_dae()
    dae.train()
    model = BetaVAEDAE(dae, SHAPE, latent_dim=6)
    assert model.dae is dae and model.pretrained == ("dae",)  # an ordinary submodule
    dae_params = {id(p) for p in dae.parameters()}
    [optimiser] = model.configure_optimizers(lr=1e-4).values()
    assert not dae_params & {id(p) for group in optimiser.param_groups for p in group["params"]}
    assert not any(k.startswith("dae") for k in model.state_dict())
    assert set(model.state_dict()) == set(BetaVAE(SHAPE, latent_dim=6).state_dict())
    # The state dict of a module holding the model leaves the DAE out too, and loading reports nothing missing.
    holder = torch.nn.ModuleDict({"vision": model})
    assert not any(".dae." in k for k in holder.state_dict())
    assert not holder.load_state_dict(holder.state_dict()).missing_keys
    assert not dae.training and not any(p.requires_grad for p in dae.parameters())
    model.train()  # training the beta-VAE must not put the frozen DAE back in training mode
    assert not dae.training
    model.double()  # moves carry the DAE along
    assert all(p.dtype == torch.float64 for p in dae.parameters())
    assert torch.isfinite(model.loss(images(2).double(), step=0)[0])


def test_beta_vae_dae_rejects_a_mismatched_dae():
    with pytest.raises(ValueError, match="dae_layer"):
        BetaVAEDAE(make_dae(), SHAPE, dae_layer="conv3")
    dae = DenoisingAutoencoder((1, 64, 64), latent_dim=8)
    with pytest.raises(ValueError, match="input_shape"):
        BetaVAEDAE(dae, SHAPE)


@pytest.mark.parametrize("shape", [(3, 84, 84), (3, 64, 32), (64, 64), (0, 64, 64)])
@pytest.mark.parametrize("cls", [BetaVAE, DenoisingAutoencoder])
def test_wrong_input_shape_is_a_clear_error(cls, shape):
    with pytest.raises(ValueError, match="input_shape"):
        cls(input_shape=shape)


def test_other_channel_counts_work():
    model = BetaVAE((1, 64, 64), latent_dim=4)
    x = torch.rand(2, 1, 64, 64)
    assert model.decode(model.encode(x)[0]).shape == x.shape


@pytest.mark.parametrize("name", ["beta_vae_dae", "beta_vae", "vae", "dae"])
def test_configs_instantiate(name):
    # Composed as the stages compose it; a model with frozen parts (VisionModel.pretrained) gets them by name.
    cfg = compose_cfg("see", [f"vision_model={name}", "vision_model.model.latent_dim=10"]).vision_model
    assert cfg.name == name
    assert {"steps", "batch_size", "lr"} <= set(cfg.train) and isinstance(cfg.train.lr, float)
    parts = {"dae": make_dae()} if name == "beta_vae_dae" else {}
    assert tuple(parts) == get_class(cfg.model._target_).pretrained
    model = instantiate(cfg.model, **parts)
    assert isinstance(model, VisionModel) and model.latent_dim == 10 and model.input_shape == SHAPE


def test_bf16_training_steps_autocast_and_keep_float32_weights(tmp_path):
    """see.precision=bf16: the same batches and start, each step under bfloat16 autocast; weights stay float32."""
    from darla.vision_training import FrameBatches, train_vision

    frames = (images(32).permute(0, 2, 3, 1) * 255).to(torch.uint8).numpy()

    def train(model, precision: str, steps: int = 3):
        batches, cpu = FrameBatches(frames), torch.device("cpu")
        checkpoint = tmp_path / f"{precision}.safetensors"
        return train_vision(model, batches, steps=steps, batch_size=8, lr=1e-3, checkpoint=checkpoint, seed=0,
                            device=cpu, precision=precision)  # fmt: skip

    trained = {p: train(MODELS["beta_vae_dae_pre_activation"](), p) for p in ("fp32", "bf16")}
    fp32, bf16 = (dict(trained[p].named_parameters()) for p in ("fp32", "bf16"))
    assert all(p.dtype == torch.float32 for p in bf16.values())
    moved = {k: (bf16[k] - fp32[k]).abs().max().item() for k in fp32}
    assert max(moved.values()) > 0  # the steps really ran in bfloat16 ...
    assert max(moved.values()) < 1e-2  # ... and stayed close to float32's (three Adam steps of lr 1e-3)
    with pytest.raises(ValueError, match="precision is 'fp16'; expected one of fp32, bf16"):
        train(MODELS["dae"](), "fp16", steps=1)
