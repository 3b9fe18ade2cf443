"""``python -m darla.stage scan see_run=<see run> [scan.out=<dir>] [key=value ...]``: SCAN on a finished see run.

SCAN (Higgins et al., ICLR 2018) grounds symbols in the frozen latents of a vision model with a
posterior (β-VAE_DAE by default; vision_models/scan.py has the networks and losses):

1. Frames: the see run's factor dataset, rendered once (all of its grid, or ``scan.points_per_combination``
   points of each combination of the symbol factors), cached in ``grid.npz``.
2. Splits: the grid points the dataset's ``allowed`` accepts are split into training points and
   ``scan.test_fraction`` test points; the points it refuses (CollectGoodObjects' held-out pairing,
   hat_can x alternative) are evaluation frames only. **SCAN never reads a refused point**: its training
   pairs are drawn from the training points alone, so a symbol naming the held-out combination is
   never formed either (the symbols it was trained on are recorded in ``training_data.npz``).
3. The visual posterior q(z_x|x) (mean, log-variance) of every frame, from the frozen encoder.
4. The judge: a CNN classifying every factor of a frame (FactorJudge), the evaluation instrument of
   sym2img, as in the paper (a classifier trained on ground truth). **It is trained on the whole grid,
   the held-out pairing included**, less ``scan.judge.test_fraction`` of the points on which its own
   accuracy is reported: it measures what a sample shows, and a judge that never saw hat/can in the
   alternative room could not say whether a sample of "hat_can + alternative" shows that, so its
   errors would be charged to SCAN. It is no part of SCAN: nothing of it reaches SCAN's training.
5. The symbol VAE, on pairs (symbol y, frame x) where x fits y: each pair names 1 to all of the
   ``scan.factors`` of a training point (how many, uniformly; which, uniformly), the others unnamed.
6. The recombination module (AND, IN_COMMON, IGNORE) on pairs of symbol posteriors of the frozen
   symbol VAE, trained with the forward KL to visual posteriors of training frames that fit the
   recombined symbol; triples touching a held-out symbol (as an input or as the result) are never trained on.
7. Evaluation (``scan.json``):

   - img2sym accuracy per attribute: z_x = encoder mean of a frame, decoded by the symbol decoder; the
     predicted value of each symbol factor is the highest logit of its block; the fraction of frames where
     it is the true value. On the training points, the test points and the held-out combination's frames.
   - sym2img accuracy of a symbol: ``scan.samples`` draws z ~ q(z_y|y), decoded by the vision model's
     decoder (sigmoid of its logits) and, for a model read through a frozen DAE J (β-VAE_DAE), shown as J
     sees that output (J's reconstruction of it: the image space its loss defines; its raw decoder output
     is not meant to look like a frame), classified by the judge; the fraction of (sample, named factor)
     pairs where the judge sees the named value (``exact``: the fraction of samples with every named
     value right).
   - sym2img diversity of a symbol: for each factor of the dataset the symbol does not name (the
     unnamed symbol factors and every other factor: position, heading, layout), KL(p || u) in nats,
     where p is the distribution of the judge's classes over the samples and u the factor's ground-truth
     distribution given the symbol, which on a factor grid is uniform over its classes; the mean over
     those factors. 0: the samples vary as the world does; log(size): they all show one class.
   - the same for the held-out symbols (those naming a combination with no training point), and for
     recombined symbols, per operator (accuracy of the recombined posterior's samples), on training
     triples and held-out ones (e.g. hat_can AND alternative).
   - references: chance (1 / size), the judge on its own held-back real frames, the judge on the vision
     model's reconstructions of test frames (the best sym2img can do through this decoder), and samples
     of the prior N(0, I) judged against each symbol (what generation without a symbol scores).

Outputs in ``<see run>/../scan/`` (or ``scan.out``): ``grid.npz``, ``judge.safetensors``,
``symbol_vae.safetensors``, ``recombination.safetensors``, ``training_data.npz``, ``scan.json``,
``sym2img.png`` (rows labelled by their symbol), ``recombination.png``, ``scan_accuracy.png``/``.pdf``,
``scan.log``, ``manifest.json``. The see run is read, never written, and its manifest is data
(darla/runs.py builds only what darla/trust.py allows).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

from darla import images
from darla.artifacts import (
    MANIFEST,
    find_parent,
    load_weights,
    read_npz,
    save_npz,
    save_weights,
    versions,
    write_json,
    write_manifest,
)
from darla.config import plain, prepare, resolve_device, start_run
from darla.errors import UserError, user_facing
from darla.latent_env import frames_to_tensor
from darla.runs import load_vision_model
from darla.vision_report import make_factor_dataset, representation_function
from envs.factor_dataset import grid_factors, training_allowed, value_names
from vision_models import plots
from vision_models.diagnostics import through_dae, tile, to_uint8
from vision_models.scan import OPERATORS, UNNAMED, FactorJudge, Recombination, SymbolSpace, SymbolVAE

log = logging.getLogger("scan")  # Hydra prints it as [scan] (configs/hydra/default.yaml)

PICTURE_SAMPLES = 8  # samples per row of sym2img.png and recombination.png


def run(cfg: DictConfig) -> Path:
    prepare(cfg)
    sc = cfg.scan
    see_dir = find_parent(cfg.see_run, cfg.runs_dir, "see")
    vision, see_manifest = load_vision_model(see_dir)
    check_posterior(vision, see_dir, see_manifest)
    dataset = make_factor_dataset(see_manifest.get("factor_dataset"), see_dir / MANIFEST)
    if dataset is None:
        raise UserError(
            f"{see_dir} was made on env {see_manifest.get('env_name')!r}, which has no factor_dataset: "
            f"SCAN builds its symbols from one"
        )
    columns = symbol_columns(dataset, list(sc.factors))
    space = SymbolSpace(
        [dataset.factor_names[c] for c in columns],
        [dataset.factor_sizes[c] for c in columns],
        [value_names(dataset, c) for c in columns],
    )
    out = Path(sc.out) if sc.out else see_dir.parent / "scan"
    settings = {
        "see_run": str(see_dir.resolve()),
        "see_content_hash": see_manifest["content_hash"],
        "scan": plain(sc),
        "seed": cfg.seed,
    }
    if start_run(out, settings, cfg):
        log.info(f"{out} is finished with these settings; nothing to do")
        return out
    file_log = logging.FileHandler(out / "scan.log")
    file_log.setFormatter(logging.Formatter("[%(asctime)s][%(name)s] %(message)s"))
    log.addHandler(file_log)
    try:
        run_scan(cfg, out, see_dir, see_manifest, vision, dataset, columns, space)
    finally:
        log.removeHandler(file_log)
        file_log.close()
        if hasattr(dataset, "close"):
            dataset.close()
    return out


def run_scan(cfg, out: Path, see_dir: Path, see_manifest: dict, vision, dataset, columns, space) -> None:
    sc = cfg.scan
    device = resolve_device(cfg.device)
    vision = vision.to(device)
    rng = np.random.default_rng(cfg.seed)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    # 1. Frames of the factor grid, rendered once (the held-out pairing too: for evaluation only).
    factors, frames = render_grid(dataset, columns, sc.points_per_combination, out / "grid.npz", cfg.seed)
    values = factors[:, columns]  # each frame's values of the symbol factors
    timings["render_s"] = time.perf_counter() - clock

    # 2. Splits: training points and test points among the allowed ones; the refused ones are held out.
    allowed = training_allowed(dataset, factors)
    allowed_rows = rng.permutation(np.flatnonzero(allowed))
    num_test = int(round(sc.test_fraction * len(allowed_rows)))
    train_rows, test_rows = np.sort(allowed_rows[num_test:]), np.sort(allowed_rows[:num_test])
    heldout_rows = np.flatnonzero(~allowed)
    if len(train_rows) == 0:
        raise UserError(f"scan.test_fraction={sc.test_fraction} leaves no training point of {len(allowed_rows)}")
    symbols = [s for s in space.all_symbols() if space.fits(s, values).any()]
    trained = [s for s in symbols if space.fits(s, values[train_rows]).any()]
    heldout_symbols = [s for s in symbols if not space.fits(s, values[train_rows]).any()]
    log.info(
        f"{len(frames)} frames: {len(train_rows)} training, {len(test_rows)} test, {len(heldout_rows)} held out; "
        f"symbols over {list(space.factor_names)}: {len(trained)} trainable, held out: "
        f"{[space.name(s) for s in heldout_symbols] or 'none'}"
    )

    # 3. The visual posterior of every frame, from the frozen encoder.
    clock = time.perf_counter()
    mean_x, logvar_x = (torch.from_numpy(a).to(device) for a in representation_function(vision, device, 256)(frames))
    timings["encode_s"] = time.perf_counter() - clock

    # 4. The judge, on the whole grid less its own test points (the docstring says why).
    clock = time.perf_counter()
    judge_rows = rng.permutation(len(frames))
    num_judge_test = int(round(sc.judge.test_fraction * len(frames)))
    judge_test, judge_train = np.sort(judge_rows[:num_judge_test]), np.sort(judge_rows[num_judge_test:])
    torch.manual_seed(cfg.seed)  # its initial weights depend on the seed alone, not on what ran before
    judge = FactorJudge(dataset.factor_sizes, int(frames.shape[-1]))
    if (out / "judge.safetensors").exists():
        load_weights(out / "judge.safetensors", judge)
        judge.to(device)
    else:
        train_judge(judge, frames[judge_train], factors[judge_train], sc.judge, cfg.seed, device)
        save_weights(out / "judge.safetensors", judge)
    judge.eval()
    timings["judge_s"] = time.perf_counter() - clock

    # 5. The symbol VAE: pairs (symbol, frame) drawn from the training points only.
    clock = time.perf_counter()
    torch.manual_seed(cfg.seed)
    symbol_vae = SymbolVAE(space.size, vision.latent_dim, **plain(sc.symbol_vae)).to(device)
    optimizer = torch.optim.Adam(symbol_vae.parameters(), lr=sc.train.lr)
    seen: set[tuple[int, ...]] = set()
    for step in range(1, sc.train.steps + 1):
        rows, named = draw_pairs(train_rows, values, sc.train.batch_size, rng)
        seen.update(map(tuple, named.tolist()))
        y = torch.from_numpy(space.khot(named)).to(device)
        total, terms = symbol_vae.loss(y, mean_x[rows], logvar_x[rows])
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        if step % sc.log_every == 0 or step == sc.train.steps:
            log.info(f"symbol VAE step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in terms.items()))
    symbol_vae.eval().requires_grad_(False)
    training_symbols = np.array(sorted(seen), np.int64)
    save_npz(out / "training_data.npz", factors=factors[train_rows], symbols=training_symbols)
    save_weights(out / "symbol_vae.safetensors", symbol_vae)
    timings["symbol_vae_s"] = time.perf_counter() - clock

    # 6. The recombination module, on triples (a, op, b) whose inputs and result are all trainable.
    clock = time.perf_counter()
    heldout_keys = {tuple(s) for s in heldout_symbols}
    triples = recombination_triples(space, symbols, heldout_keys)
    fitting = {tuple(r): train_rows[space.fits(r, values[train_rows])] for _, _, _, r in triples["train"]}
    recombination = Recombination(sc.recombination.hidden).to(device)
    optimizer = torch.optim.Adam(recombination.parameters(), lr=sc.recombination.lr)
    for step in range(1, sc.recombination.steps + 1):
        picks = [triples["train"][i] for i in rng.integers(len(triples["train"]), size=sc.recombination.batch_size)]
        rows = np.array([rng.choice(fitting[tuple(r)]) for *_, r in picks])
        inputs, op = recombination_inputs(symbol_vae, space, picks, device)
        loss = recombination.loss(inputs, op, mean_x[rows], logvar_x[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % sc.log_every == 0 or step == sc.recombination.steps:
            log.info(f"recombination step {step}: forward_kl {loss.item():.3f}")
    recombination.eval().requires_grad_(False)
    save_weights(out / "recombination.safetensors", recombination)
    timings["recombination_s"] = time.perf_counter() - clock

    # 7. Evaluation.
    clock = time.perf_counter()
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)

    def judged(mean: torch.Tensor, logvar: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """sc.samples draws of N(mean, exp(logvar)) (D,), decoded and classified: (images, judge classes)."""
        noise = torch.randn(sc.samples, len(mean), generator=gen).to(device)
        with torch.no_grad():
            pictures = through_dae(vision, torch.sigmoid(vision.decode(mean + noise * (0.5 * logvar).exp())))
            return pictures, judge.predict(pictures).cpu().numpy()

    def img2sym(rows: np.ndarray) -> dict:
        if len(rows) == 0:
            return {"frames": 0}
        with torch.no_grad():
            predicted = space.blocks(symbol_vae.decode(mean_x[rows]).cpu().numpy())
        right = predicted == values[rows]
        return {"frames": int(len(rows)), **{n: float(right[:, f].mean()) for f, n in enumerate(space.factor_names)}}

    judge_scores = judge_accuracy(judge, frames, factors, judge_test, dataset.factor_names, device)
    prior_pictures, prior_classes = judged(torch.zeros(vision.latent_dim), torch.zeros(vision.latent_dim))
    per_symbol, pictures = {}, {}
    for s in symbols:
        with torch.no_grad():
            mean, logvar = (t[0] for t in symbol_vae.encode(torch.from_numpy(space.khot(s)).to(device)))
        pictures[tuple(s)], classes = judged(mean, logvar)
        per_symbol[space.name(s)] = {
            "symbol": s.tolist(),
            "heldout": tuple(s) in heldout_keys,
            **sample_scores(classes, s, columns, dataset),
            "prior_accuracy": sample_scores(prior_classes, s, columns, dataset)["accuracy"],
        }
    recombined = {}
    for split, listed in triples.items():
        for op in OPERATORS:
            chosen = [t for t in listed if t[1] == op]
            if split == "train" and len(chosen) > sc.recombination.eval_triples:
                chosen = [chosen[i] for i in rng.choice(len(chosen), sc.recombination.eval_triples, replace=False)]
            rows_ = []
            for a, op_, b, r in chosen:
                inputs, op_index = recombination_inputs(symbol_vae, space, [(a, op_, b, r)], device)
                with torch.no_grad():
                    mean, logvar = (t[0] for t in recombination(*inputs, op_index))
                picture, classes = judged(mean, logvar)
                label = f"{space.name(a)} {op_.replace('_', ' ')} {space.name(b)} = {space.name(r)}"
                rows_.append({"triple": label, **sample_scores(classes, r, columns, dataset)})
                pictures[(split, label)] = picture
            recombined.setdefault(op, {})[split] = summarize(rows_, extra={"triples": rows_})
    reconstructions = reconstruction_accuracy(
        vision, judge, frames[test_rows], factors[test_rows], dataset.factor_names, device
    )
    report = {
        "symbol_factors": list(space.factor_names),
        "symbols": {"trained": [space.name(s) for s in trained], "heldout": [space.name(s) for s in heldout_symbols]},
        "training_symbols": [space.name(s) for s in training_symbols],
        "frames": {"train": int(len(train_rows)), "test": int(len(test_rows)), "heldout": int(len(heldout_rows))},
        "img2sym": {"train": img2sym(train_rows), "test": img2sym(test_rows), "heldout": img2sym(heldout_rows)},
        "sym2img": {
            "trained_symbols": summarize([v for v in per_symbol.values() if not v["heldout"]]),
            "heldout_symbols": summarize([v for v in per_symbol.values() if v["heldout"]]),
            "per_symbol": per_symbol,
        },
        "recombination": recombined,
        "references": {
            "chance": {dataset.factor_names[c]: 1.0 / dataset.factor_sizes[c] for c in columns},
            "judge_on_frames": judge_scores,
            "judge_on_reconstructions": reconstructions,
            "prior_samples": {
                "trained_symbols": mean_of([v["prior_accuracy"] for v in per_symbol.values() if not v["heldout"]]),
                "heldout_symbols": mean_of([v["prior_accuracy"] for v in per_symbol.values() if v["heldout"]]),
            },
        },
        "samples_per_symbol": int(sc.samples),
    }
    timings["evaluate_s"] = time.perf_counter() - clock
    report["timings"] = timings
    log_headlines(report)

    # 8. Pictures: sym2img rows labelled by their symbol, recombinations, and the headline figures.
    shown = sorted(symbols, key=lambda s: (-(s != UNNAMED).sum(), tuple(s)))
    grid = tile([to_uint8(pictures[tuple(s)][:PICTURE_SAMPLES]) for s in shown])
    labels = [space.name(s) + (" (held out)" if tuple(s) in heldout_keys else "") for s in shown]
    images.save_png(out / "sym2img.png", grid, labels=labels)
    recombination_rows = [key for key in pictures if isinstance(key[0], str)]
    picked = [  # per operator, the first two held-out triples, then the first two training ones
        key
        for split in ("heldout", "train")
        for op in OPERATORS
        for key in [k for k in recombination_rows if k[0] == split and f" {op.replace('_', ' ')} " in k[1]][:2]
    ]
    if picked:
        grid = tile([to_uint8(pictures[k][:PICTURE_SAMPLES]) for k in picked])
        labels = [k[1] + (" (held out)" if k[0] == "heldout" else "") for k in picked]
        images.save_png(out / "recombination.png", grid, labels=labels)
    plots.save_figure(accuracy_figure(report), out / "scan_accuracy.png")

    write_json(out / "scan.json", report)
    write_manifest(
        out,
        {
            "stage": "scan",
            "see_run": str(see_dir.resolve()),
            "see_content_hash": see_manifest["content_hash"],
            "vision_model": see_manifest["vision_model"],
            "latent_dim": int(vision.latent_dim),
            "env_name": see_manifest.get("env_name"),
            "factor_dataset": see_manifest.get("factor_dataset"),
            "symbol_factors": list(space.factor_names),
            "symbol_size": space.size,
            "scan": plain(sc),
            "seed": cfg.seed,
            "versions": versions(),
        },
    )
    log.info(f"done: {out}")


def check_posterior(vision, see_dir: Path, manifest: dict) -> None:
    """Refuse a vision model SCAN cannot ground symbols in: it needs a Gaussian posterior and a decoder."""
    name = manifest.get("vision_model", {}).get("name", "?")
    with torch.no_grad():
        logvar = vision.encode(torch.zeros(1, *vision.input_shape))[1] if vision.can_decode else None
    if logvar is None:
        what = "no decoder" if not vision.can_decode else "an encoder without a posterior variance"
        raise UserError(
            f"{see_dir} holds vision_model={name}, which has {what}; SCAN needs a model with a Gaussian "
            f"posterior and a decoder (vae, beta_vae, beta_vae_dae, annealed_vae, beta_tcvae, factor_vae, dip_vae)"
        )


def symbol_columns(dataset, names: list[str]) -> list[int]:
    """Columns of the factor dataset that ``scan.factors`` names; refused in one line otherwise."""
    known = list(dataset.factor_names)
    bad = [n for n in names if n not in known]
    if bad or len(set(names)) != len(names):
        raise UserError(
            f"scan.factors={names} is not allowed: expected distinct factor names of the see run's factor "
            f"dataset, from {known}"
        )
    return [known.index(n) for n in names]


def render_grid(dataset, columns: list[int], per_combination, path: Path, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The factor grid's points SCAN uses and their frames, rendered once and cached in ``path``.

    All of the grid, or ``per_combination`` points drawn at random (seeded) from each combination of
    the symbol factors' values.
    """
    factors = grid_factors(dataset.factor_sizes)
    if per_combination is not None:
        rng = np.random.default_rng(seed)
        _, combination = np.unique(factors[:, columns], axis=0, return_inverse=True)
        keep = [
            rng.choice(rows, min(per_combination, len(rows)), replace=False)
            for rows in (np.flatnonzero(combination.ravel() == c) for c in range(combination.max() + 1))
        ]
        factors = factors[np.sort(np.concatenate(keep))]
    if path.exists():
        cached = read_npz(path, "factors", "frames")
        if np.array_equal(cached["factors"], factors):
            return factors, cached["frames"]
    clock = time.perf_counter()
    frames = np.concatenate([dataset.render(factors[i : i + 256]) for i in range(0, len(factors), 256)])
    log.info(f"rendered {len(frames)} frames of the factor grid in {time.perf_counter() - clock:.1f}s")
    save_npz(path, factors=factors, frames=frames)
    return factors, frames


def draw_pairs(train_rows: np.ndarray, values: np.ndarray, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """n training pairs: frame rows drawn from ``train_rows`` and the symbol each is paired with.

    A symbol names 1 to all of the symbol factors of its frame (how many: uniform; which: uniform),
    with its frame's values, and UNNAMED elsewhere; only ever a training point's own values.
    """
    rows = rng.choice(train_rows, size=n)
    count = rng.integers(1, values.shape[1] + 1, size=n)
    named = rng.random((n, values.shape[1])).argsort(axis=1) < count[:, None]
    return rows, np.where(named, values[rows], UNNAMED)


def recombination_triples(space: SymbolSpace, symbols: list, heldout: set) -> dict[str, list]:
    """Every (a, op, b, op(a, b)) over the known symbols whose result is a known symbol, split into
    ``train`` (no held-out symbol anywhere) and ``heldout`` (a held-out symbol as an input or the result)."""
    known = {tuple(s) for s in symbols}
    found: dict[str, list] = {"train": [], "heldout": []}
    for op in OPERATORS:
        for a in symbols:
            for b in symbols:
                r = space.combine(op, a, b)
                if r is None or tuple(r) not in known:
                    continue
                touches = {tuple(a), tuple(b), tuple(r)} & heldout
                found["heldout" if touches else "train"].append((a, op, b, r))
    return found


def recombination_inputs(symbol_vae, space: SymbolSpace, triples: list, device) -> tuple[tuple, torch.Tensor]:
    """The symbol posteriors (mean a, logvar a, mean b, logvar b) and operator indices of triples."""
    a = torch.from_numpy(space.khot(np.stack([t[0] for t in triples]))).to(device)
    b = torch.from_numpy(space.khot(np.stack([t[2] for t in triples]))).to(device)
    with torch.no_grad():
        posteriors = (*symbol_vae.encode(a), *symbol_vae.encode(b))
    op = torch.tensor([OPERATORS.index(t[1]) for t in triples], device=device)
    return posteriors, op


def train_judge(judge: FactorJudge, frames: np.ndarray, factors: np.ndarray, settings, seed: int, device) -> None:
    """Adam on the judge's cross-entropy, minibatches drawn at random from (frames, factors)."""
    judge.to(device).train()
    optimizer = torch.optim.Adam(judge.parameters(), lr=settings.lr)
    rng = np.random.default_rng(seed)
    targets = torch.from_numpy(factors).to(device)
    for step in range(1, settings.steps + 1):
        rows = rng.integers(len(frames), size=settings.batch_size)
        loss = judge.loss(frames_to_tensor(frames[rows], device), targets[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % max(1, settings.steps // 10) == 0 or step == settings.steps:
            log.info(f"judge step {step}: cross-entropy {loss.item():.3f}")


def judge_accuracy(judge, frames, factors, rows, names, device) -> dict:
    """The judge's accuracy per factor on the real frames it was not trained on."""
    if len(rows) == 0:
        return {"frames": 0}
    with torch.no_grad():
        predicted = np.concatenate(
            [
                judge.predict(frames_to_tensor(frames[rows[i : i + 256]], device)).cpu().numpy()
                for i in range(0, len(rows), 256)
            ]
        )
    right = predicted == factors[rows]
    return {"frames": int(len(rows)), **{n: float(right[:, k].mean()) for k, n in enumerate(names)}}


def reconstruction_accuracy(vision, judge, frames, factors, names, device) -> dict:
    """The judge's accuracy per factor on the vision model's reconstructions (encoder mean, decoded)."""
    if len(frames) == 0:
        return {"frames": 0}
    with torch.no_grad():
        predicted = np.concatenate(
            [
                judge.predict(through_dae(vision, vision.reconstruct(frames_to_tensor(frames[i : i + 256], device))))
                .cpu()
                .numpy()
                for i in range(0, len(frames), 256)
            ]
        )
    right = predicted == factors
    return {"frames": int(len(frames)), **{n: float(right[:, k].mean()) for k, n in enumerate(names)}}


def sample_scores(classes: np.ndarray, symbol: np.ndarray, columns: list[int], dataset) -> dict:
    """sym2img accuracy and diversity of samples the judge classified (classes: (n, num_factors))."""
    named = [(columns[f], int(v)) for f, v in enumerate(symbol) if v != UNNAMED]
    right = np.stack([classes[:, c] == v for c, v in named], axis=1)
    diversity = {}
    for c, size in enumerate(dataset.factor_sizes):
        if c in [k for k, _ in named]:
            continue
        p = np.bincount(classes[:, c], minlength=size) / len(classes)
        diversity[dataset.factor_names[c]] = float(np.sum(p[p > 0] * np.log(p[p > 0] * size)))  # KL(p || uniform)
    return {
        "accuracy": float(right.mean()),
        "exact": float(right.all(axis=1).mean()),
        "accuracy_per_factor": {dataset.factor_names[c]: float(right[:, i].mean()) for i, (c, _) in enumerate(named)},
        "diversity": mean_of(list(diversity.values())),
        "diversity_per_factor": diversity,
    }


def mean_of(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def summarize(rows: list[dict], extra: dict | None = None) -> dict:
    """Means of accuracy, exact and diversity over symbols (or triples)."""
    keys = ("accuracy", "exact", "diversity")
    return {
        "count": len(rows),
        **{k: mean_of([r[k] for r in rows if r[k] is not None]) for k in keys},
        **(extra or {}),
    }


def log_headlines(report: dict) -> None:
    for split, scores in report["img2sym"].items():
        log.info(f"img2sym {split}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items() if k != "frames"))
    for split in ("trained_symbols", "heldout_symbols"):
        s = report["sym2img"][split]
        if s["count"]:
            log.info(
                f"sym2img {split}: accuracy {s['accuracy']:.3f}, exact {s['exact']:.3f}, diversity {s['diversity']}"
            )
    for op, splits in report["recombination"].items():
        for split, s in splits.items():
            if s["count"]:
                log.info(f"recombination {op} {split}: accuracy {s['accuracy']:.3f} over {s['count']} triples")


def accuracy_figure(report: dict):
    """The headline accuracies as one bar chart (matplotlib)."""
    values, labels = [], []
    for split, scores in report["img2sym"].items():
        for k, v in scores.items():
            if k != "frames":
                values.append(v)
                labels.append(f"img2sym {k} ({split})")
    for split in ("trained_symbols", "heldout_symbols"):
        if report["sym2img"][split]["count"]:
            values.append(report["sym2img"][split]["accuracy"])
            labels.append(f"sym2img ({split.split('_')[0]})")
    for op, splits in report["recombination"].items():
        for split, s in splits.items():
            if s["count"]:
                values.append(s["accuracy"])
                labels.append(f"{op} ({split})")
    return plots.bar_plot(values, labels=labels, title="SCAN accuracies", ylabel="accuracy")


@hydra.main(config_path="../configs", config_name="scan", version_base="1.3")
@user_facing("scan")
def main(cfg: DictConfig) -> None:
    run(cfg)
