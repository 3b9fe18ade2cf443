"""Run directories are data, never code.

A manifest names the classes its models were built from (``_target_``, as in the config that made
them). Reading a run back must not let a file choose what runs: ``build_recorded`` builds a
recorded ``_target_`` only when it is a class, of the kind expected, from a module the user has
made available — darla's own ``vision_models`` and ``envs``, the modules of the ``_target_``s in
this invocation's config (the zoo and any configs on the search path), and packages named in
``trusted_modules=[...]``. Its arguments must be plain data. Nothing else is imported or called.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from omegaconf import DictConfig, OmegaConf

from darla.errors import UserError

BUILT_IN = ("vision_models", "envs")
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")
_allowed: set[str] = set(BUILT_IN)


def allow_config(cfg: DictConfig) -> None:
    """Make the modules this invocation's config names available to ``build_recorded``."""
    _allowed.update(config_modules(cfg))


def config_modules(cfg: DictConfig) -> set[str]:
    """The modules of every ``_target_`` in ``cfg``, and those listed under ``trusted_modules``."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            target = node.get("_target_")
            if isinstance(target, str) and _DOTTED.fullmatch(target):
                found.add(target.rsplit(".", 1)[0])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(OmegaConf.to_container(cfg, resolve=False))
    listed = cfg.get("trusted_modules") or []  # checked by darla/settings.py
    return found | set(listed)


def allowed_modules() -> list[str]:
    return sorted(_allowed)


def _is_allowed(module: str, allowed: Iterable[str]) -> bool:
    return any(module == root or module.startswith(root + ".") for root in allowed)


def build_recorded(
    spec: Any, base: type, what: str, source: Path, allowed: Iterable[str] | None = None, **extra: Any
) -> Any:
    """Build ``spec`` (``{"_target_": "module.Class", **kwargs}`` read from the file ``source``).

    Refused, naming ``source``, unless the target is a subclass of ``base`` in an allowed module
    and every argument is plain data (numbers, strings, booleans, null, lists and dicts of them,
    with no ``_target_`` or other Hydra key inside). ``extra`` arguments come from the caller.
    """
    allowed = list(_allowed if allowed is None else allowed)
    if not isinstance(spec, Mapping) or not isinstance(spec.get("_target_"), str):
        raise UserError(
            f"{source}: {what} has no _target_ naming its class; the run was not written by darla or was edited"
        )
    target = spec["_target_"]
    refuse = (
        f"{source}: {what}._target_ {target!r} is refused: a run directory may only name a class "
        f"(a {base.__name__}) of the modules {allowed} (add your own package with trusted_modules=[...])"
    )
    if not _DOTTED.fullmatch(target):
        raise UserError(refuse)
    module_name, class_name = target.rsplit(".", 1)
    if not _is_allowed(module_name, allowed):
        raise UserError(refuse)
    kwargs = {k: v for k, v in spec.items() if k != "_target_"}
    for key, value in kwargs.items():
        _check_plain(value, f"{what}.{key}", source, str(key))
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise UserError(f"{source}: {what}._target_ {target!r}: cannot import {module_name!r} ({err})") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise UserError(refuse)
    return cls(**kwargs, **extra)


def _check_plain(value: Any, where: str, source: Path, key: str) -> None:
    if key.startswith("_"):
        raise UserError(
            f"{source}: {where} is refused: keys starting with '_' (Hydra's _target_, _args_, "
            f"_partial_, ...) are not allowed in a recorded model's arguments"
        )
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]", source, "")
        return
    if isinstance(value, Mapping):
        for k, item in value.items():
            _check_plain(item, f"{where}.{k}", source, str(k))
        return
    raise UserError(f"{source}: {where} is a {type(value).__name__}; recorded arguments must be plain data")
