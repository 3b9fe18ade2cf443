"""Run directories and the files in them: atomic writes, safetensors state, manifests, hashes.

Nothing half-written is ever left under its final name (write a temporary file, then rename),
and nothing is ever unpickled: tensors go to safetensors, everything else to JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from darla.errors import UserError

MANIFEST = "manifest.json"
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_json(path: Path, data: Any) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n"))


def write_jsonl(path: Path, records: list[dict]) -> Path:
    """One JSON object per line (raw per-episode and per-evaluation results)."""
    return atomic_write(
        path, lambda tmp: tmp.write_text("".join(json.dumps(r, default=_jsonable) + "\n" for r in records))
    )


def read_jsonl(path: Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise UserError(f"{path}, line {number}, is not valid JSON ({err}); the file is damaged") from None
    return records


def save_npz(path: Path, **arrays: np.ndarray) -> Path:
    """Arrays in an uncompressed .npz (read back with allow_pickle=False)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(path, write)


def read_npz(path: Path, *keys: str) -> dict[str, np.ndarray]:
    """Arrays of an .npz written by :func:`save_npz` (all of them, or ``keys``), never unpickling."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in (keys or data.files)}
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist") from None
    except KeyError as err:
        raise UserError(f"{path} has no array {err}; it was not written by this stage") from None
    except Exception as err:  # BadZipFile, a truncated member, an object array
        raise UserError(
            f"{path} is damaged or not an array file ({type(err).__name__}: {err}); delete it and run the stage again"
        ) from None


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not valid JSON: {err}") from None


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def save_state(path: Path, state: Mapping[str, Any]) -> Path:
    """Save a nested dict (model/optimiser state, counters) as one safetensors file.

    Tensors are stored under keys joined with "/" (torch's own keys keep their dots); every other leaf
    (ints, floats, strings, lists of them) goes to the file's JSON metadata, so optimiser states
    round-trip without pickle.
    """
    tensors: dict[str, torch.Tensor] = {}
    others: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, torch.Tensor):
            tensors[prefix] = node.detach().cpu().clone()  # clone: state dicts may share storage
        elif isinstance(node, Mapping):
            if not node:
                others[prefix] = {}
            for k, v in node.items():
                walk(f"{prefix}/{k}" if prefix else str(k), v)
        else:
            others[prefix] = node

    walk("", state)
    metadata = {"darla_leaves": json.dumps(others, default=_jsonable)}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def load_state(path: Path) -> dict[str, Any]:
    """Inverse of :func:`save_state`; integer-looking keys come back as ints (optimiser states)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        flat: dict[str, Any] = dict(load_file(str(path)))
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from None
    flat.update(json.loads(metadata.get("darla_leaves", "{}")))
    nested: dict[Any, Any] = {}
    for key, value in flat.items():
        node = nested
        parts = [int(p) if p.isdigit() else p for p in key.split("/")]
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return nested


def rng_state() -> dict[str, Any]:
    """The global random generators of torch (CPU), numpy and Python, for a checkpoint."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
        "python": [version, list(internal), gauss],
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` saved (after :func:`load_state`)."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)))
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(x) for x in internal), gauss))


def save_weights(path: Path, module: torch.nn.Module) -> Path:
    """A module's parameters and buffers as a flat safetensors file (what later stages load).

    safetensors' save_model stores tensors shared between submodules once (SB3's CNN policy
    shares its feature extractor between actor and critic).
    """
    return atomic_write(path, lambda tmp: save_model(module, str(tmp)))


def load_weights(path: Path, module: torch.nn.Module) -> torch.nn.Module:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        missing, unexpected = load_model(module, str(path), strict=False)
    except RuntimeError as err:
        raise ValueError(f"{path} does not fit {type(module).__name__}: {err}") from None
    except Exception as err:  # safetensors' own error types for unreadable files
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from None
    if missing or unexpected:
        raise ValueError(
            f"{path} does not fit {type(module).__name__}: missing {sorted(missing)}, unexpected {sorted(unexpected)}"
        )
    return module


def file_hash(*paths: Path) -> str:
    """sha256 over the bytes of the given files, in order."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def pretrained_settings(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """A see run's frozen parts (VisionModel.pretrained) by name: the settings each was built and trained with."""
    if "pretrained" in manifest:
        return dict(manifest["pretrained"] or {})
    return {"dae": manifest["dae"]} if manifest.get("dae") else {}  # see runs written before `pretrained`


def sealed_files(manifest: Mapping[str, Any]) -> list[str]:
    """The files of a finished stage that its manifest's content hash covers, besides the manifest."""
    stage = manifest.get("stage")
    if stage == "see":
        return [f"{name}.safetensors" for name in pretrained_settings(manifest)] + ["vision_model.safetensors"]
    if stage == "act":
        return ["policy.safetensors"]
    if stage == "transfer":
        return ["episodes.jsonl"]
    if stage == "scan":
        return ["symbol_vae.safetensors", "recombination.safetensors", "judge.safetensors", "scan.json"]
    raise UserError(f"the manifest names stage {stage!r}; expected see, act, transfer or scan")


def content_hash(body: Mapping[str, Any], run: Path) -> str:
    """sha256 over the stage's result files and its manifest (everything but the hash itself)."""
    h = hashlib.sha256(file_hash(*[Path(run) / f for f in sealed_files(body)]).encode())
    h.update(json.dumps(_normal({k: v for k, v in body.items() if k != "content_hash"}), sort_keys=True).encode())
    return h.hexdigest()


def write_manifest(run: Path, manifest: Mapping[str, Any]) -> Path:
    """Write a finished stage's manifest with the content hash of its files and of itself."""
    body = _normal({k: v for k, v in manifest.items() if k != "content_hash"})
    return write_json(Path(run) / MANIFEST, {**body, "content_hash": content_hash(body, run)})


def read_manifest(run: Path, stage: str | None = None) -> dict:
    """The manifest of a finished ``stage`` run, after checking it and its files against its content hash.

    Refuses a run whose manifest or result files were changed after it finished, naming them.
    """
    run = Path(run)
    manifest = read_json(run / MANIFEST)
    if not isinstance(manifest, dict):
        raise UserError(f"{run / MANIFEST} is not a darla manifest (a JSON object)")
    if stage is not None and manifest.get("stage") != stage:
        raise UserError(f"{run / MANIFEST} is the manifest of a {manifest.get('stage')!r} run; expected a {stage} run")
    files = [run / f for f in sealed_files(manifest)]
    for f in files:
        if not f.exists():
            raise UserError(f"{f} does not exist; the {manifest['stage']} run {run} is incomplete (run it again)")
    if content_hash(manifest, run) != manifest.get("content_hash"):
        raise UserError(
            f"{', '.join(str(f) for f in [run / MANIFEST, *files])} do not match the content hash "
            f"recorded in the manifest; the run was changed after it finished (run the stage again, or "
            f"restore the files)"
        )
    return manifest


def cpu() -> str:
    """The CPU's model and the vector extensions torch's kernels choose by: training on another CPU
    (AMX or not, say) gives other weights from the same seed, so manifests record it."""
    info = Path("/proc/cpuinfo")
    text = info.read_text() if info.exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
    flags = set(text.split())
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{model or platform.processor() or platform.machine()} ({' '.join(isa) or 'no avx2'})"


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on, and the CPU, for manifests; with darla's git
    commit when it runs from a checkout ("+changes" when the checkout differs from the commit)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"cpu": cpu()}
    for pkg in ("darla", "torch", "gymnasium", "stable-baselines3", "miniworld", "numpy"):
        try:
            found[pkg] = version(pkg)
        except PackageNotFoundError:
            found[pkg] = "not installed"
    source = Path(__file__).resolve().parents[1]

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "--short", "HEAD")
        if head.returncode == 0:
            changed = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
            found["darla_commit"] = head.stdout.strip() + ("+changes" if changed else "")
    except (OSError, subprocess.TimeoutExpired):
        pass
    return found


def run_dir(runs_dir: str | Path, name: str, stage: str) -> Path:
    return Path(runs_dir) / name / stage


def find_parent(ref: str, runs_dir: str | Path, stage: str) -> Path:
    """Resolve a parent stage's directory from a run name (``runs/<ref>/<stage>``) or a path."""
    candidates = [Path(ref), Path(ref) / stage, run_dir(runs_dir, ref, stage)]
    for c in candidates:
        if (c / MANIFEST).exists():
            return c
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"no finished {stage} run found for {ref!r} (looked for {MANIFEST} in {tried}); "
        f"run `python -m darla.stage {stage}` first or point to its directory"
    )


def check_parent(parent: Path, manifest: Mapping[str, Any], expect: Mapping[str, Any]) -> None:
    """Refuse a parent whose manifest does not fit what this stage expects, naming both sides."""
    for key, want in expect.items():
        have = manifest.get(key)
        if _normal(have) != _normal(want):
            raise ValueError(f"parent {parent} does not fit: its {key} is {have!r}, this stage expects {want!r}")


def _normal(x: Any) -> Any:
    return json.loads(json.dumps(x, default=_jsonable))
