"""Named, versioned training recipes that domain packages register into.

A recipe is a default ``TrainConfig`` plus a ``builder(config) -> RecipeParts`` that turns the
(possibly overridden) config into a model, datasets, a loss and metrics. Domain packages
register theirs in ``mambakit.<domain>.recipes`` (imported on demand by ``find_recipe``)::

    register_recipe("vision", "fashion-mnist-vim-tiny", 1, build_fn, config=default_config,
                    description="Vim-tiny on Fashion-MNIST")

``mambakit train vision fashion-mnist-vim-tiny`` then runs the newest version;
``fashion-mnist-vim-tiny@1`` pins one. A recipe's results are recorded in
``benchmarks/results/recipes/<name>.json``.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import torch.nn as nn
from torch.utils.data import Dataset

from .config import TrainConfig
from .metrics import MetricLike

DOMAINS = ("core", "vision", "audio", "genomics", "timeseries", "graphs")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass
class RecipeParts:
    """Everything ``fit`` needs, as a recipe builds it.

    ``eval_data`` is what ``fit`` evaluates during training (and selects ``checkpoints/best``
    on); a recipe with a separate ``test_data`` gets it scored once at the end with the selected
    weights (recorded as ``test_metrics``).

    ``baseline`` (optional) computes the comparison recorded next to the recipe's result:
    ``baseline() -> {"name": str, "metrics": {name: value}, ...}``, on the same evaluation set.
    """

    model: nn.Module
    train_data: Dataset
    eval_data: Optional[Dataset]
    loss_fn: Callable
    metrics: Sequence[MetricLike] = ()
    config: Optional[TrainConfig] = None
    collate_fn: Optional[Callable] = None
    predict_fn: Optional[Callable] = None
    baseline: Optional[Callable[[], dict]] = None
    test_data: Optional[Dataset] = None
    dataset_name: str = ""
    split: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    domain: str
    name: str
    version: int
    builder: Callable[[TrainConfig], RecipeParts]
    default_config: Callable[[], TrainConfig]
    description: str = ""

    @property
    def key(self) -> str:
        """``domain/name@version``, as stored in ``TrainConfig.recipe``."""
        return f"{self.domain}/{self.name}@{self.version}"

    def config(self) -> TrainConfig:
        """A fresh default config with ``recipe`` set to this recipe's key."""
        config = self.default_config()
        if not isinstance(config, TrainConfig):
            raise TypeError(f"recipe {self.key}: config factory returned {type(config).__name__}, not a TrainConfig")
        config.recipe = self.key
        return config.validate()

    def build(self, config: TrainConfig) -> RecipeParts:
        parts = self.builder(config)
        if not isinstance(parts, RecipeParts):
            raise TypeError(f"recipe {self.key}: builder returned {type(parts).__name__}, not RecipeParts")
        if parts.config is None:
            parts.config = config
        return parts


_REGISTRY: dict[tuple[str, str], dict[int, Recipe]] = {}


def register_recipe(domain: str, name: str, version: int, builder: Callable[[TrainConfig], RecipeParts],
                    config: Union[TrainConfig, Callable[[], TrainConfig]], description: str = "") -> Recipe:
    """Register ``builder`` as recipe ``domain/name@version`` with default ``config``.

    ``config`` is a ``TrainConfig`` (copied for every use) or a function returning one.
    Registering the same ``(domain, name, version)`` twice raises ``ValueError``.
    """
    if domain not in DOMAINS:
        raise ValueError(f"domain: expected one of {DOMAINS}, got {domain!r}")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"recipe name {name!r}: use lowercase letters, digits, '.', '_' and '-'")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"recipe version: expected an int >= 1, got {version!r}")
    if not callable(builder):
        raise TypeError("builder must be callable: builder(config) -> RecipeParts")
    if isinstance(config, TrainConfig):
        snapshot = config.to_dict()
        factory = lambda: TrainConfig.from_dict(snapshot)  # noqa: E731
    elif callable(config):
        factory = config
    else:
        raise TypeError(f"config: expected a TrainConfig or a function returning one, got {type(config).__name__}")
    versions = _REGISTRY.setdefault((domain, name), {})
    if version in versions:
        raise ValueError(f"recipe {domain}/{name}@{version} is already registered")
    recipe = Recipe(domain, name, version, builder, factory, description)
    versions[version] = recipe
    return recipe


def _load_domain(domain: str) -> None:
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; domains: {', '.join(DOMAINS)}")
    if domain == "core":
        importlib.import_module("mambakit.train.lm_recipes")
        importlib.import_module("mambakit.train.synthetic_recipes")
        return
    try:
        importlib.import_module(f"mambakit.{domain}.recipes")
    except ModuleNotFoundError as err:
        if err.name not in (f"mambakit.{domain}.recipes", f"mambakit.{domain}"):
            raise


def list_recipes(domain: Optional[str] = None) -> list[Recipe]:
    """The newest version of every registered recipe (of ``domain`` when given)."""
    for d in ([domain] if domain else DOMAINS):
        _load_domain(d)
    out = [versions[max(versions)] for (d, _), versions in sorted(_REGISTRY.items())
           if domain is None or d == domain]
    return out


def find_recipe(domain: str, name: str) -> Recipe:
    """Recipe ``name`` (newest version) or ``name@version`` of ``domain``; ``ValueError`` with the
    available names when there is no such recipe."""
    _load_domain(domain)
    version: Optional[int] = None
    if "@" in name:
        name, _, text = name.partition("@")
        try:
            version = int(text.lstrip("v"))
        except ValueError as err:
            raise ValueError(f"recipe version {text!r} is not an integer") from err
    versions = _REGISTRY.get((domain, name))
    if not versions:
        known = [r.name for r in list_recipes(domain)]
        raise ValueError(f"no recipe {name!r} in domain {domain!r}; available: {', '.join(known) or 'none yet'}")
    if version is None:
        return versions[max(versions)]
    if version not in versions:
        raise ValueError(f"recipe {domain}/{name} has versions {sorted(versions)}, not {version}")
    return versions[version]


def parse_recipe_key(key: str) -> tuple[str, str]:
    """``"core/klebsiella-lm-tiny@1"`` -> ``("core", "klebsiella-lm-tiny@1")``."""
    if "/" not in key:
        raise ValueError(f"recipe key {key!r}: expected 'domain/name@version'")
    domain, _, name = key.partition("/")
    return domain, name
