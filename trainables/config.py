"""The typed, frozen training configuration, validated once when it is built.

Every section validates its own fields in ``__post_init__`` and raises
:class:`~trainables.validation.ConfigError` naming the field, the value and the valid range.
``TrainConfig.from_dict`` builds it from nested plain data (YAML, CLI, Ray Tune params) and
``to_dict`` gives that data back.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from trainables.data import DATASETS
from trainables.health import HealthConfig
from trainables.loss import MARGIN_MODES, distance_margin
from trainables.model import ModelConfig
from trainables.photometric import PhotometricConfig
from trainables.validation import ConfigError, check_choice, check_range
from trainables.views import VIEW_FAMILIES, ViewSampler, make_views

QUERY_SPLIT = "test"
BANK_SPLIT = "train"


@dataclass(frozen=True)
class DataConfig:
    """Training data and the labelled dataset that kNN evaluates on (bank: train, queries: test).

    ``eval_dataset`` defaults to the training dataset's usual evaluation set (``coco`` ->
    ``cifar10``, ``digit-scenes`` -> ``digits``). ``limit``/``eval_limit`` cap the number of
    images, for quick runs.
    """

    dataset: str = "digits"
    eval_dataset: str | None = None
    root: str | None = None
    train_split: str = "train"
    limit: int | None = None
    eval_limit: int | None = None

    def __post_init__(self) -> None:
        info = DATASETS[check_choice("data.dataset", self.dataset, DATASETS)]
        check_choice("data.train_split", self.train_split, info.splits)
        if self.eval_dataset is None:
            object.__setattr__(self, "eval_dataset", info.default_eval)
        labelled = [name for name, spec in DATASETS.items() if BANK_SPLIT in spec.labelled_splits]
        check_choice("data.eval_dataset", self.eval_dataset, labelled)
        for name in ("limit", "eval_limit"):
            if getattr(self, name) is not None:
                check_range(f"data.{name}", getattr(self, name), 1, integer=True)


@dataclass(frozen=True)
class ViewConfig:
    """A view family, its parameters (see :mod:`trainables.views`) and the output side in pixels."""

    family: str = "random_crop"
    params: dict[str, Any] = field(default_factory=dict)
    size: int = 32

    def __post_init__(self) -> None:
        check_choice("views.family", self.family, VIEW_FAMILIES)
        check_range("views.size", self.size, 1, integer=True)
        self.build()

    def build(self) -> ViewSampler:
        return make_views(self.family, size=self.size, **dict(self.params))


@dataclass(frozen=True)
class MarginConfig:
    """Floor on each SimSiam term at ``-1 + m``: ``none``; ``fixed`` (``m``); ``distance``
    (``m = k * phi``, ``phi`` the views' centre distance over the image diagonal)."""

    mode: str = "none"
    m: float = 0.2
    k: float = 1.0

    def __post_init__(self) -> None:
        check_choice("margin.mode", self.mode, MARGIN_MODES)
        check_range("margin.m", self.m, 0, 2)
        check_range("margin.k", self.k, 0)

    def margin(self, phi):
        """The margin for a batch with centre-distance ratios ``phi``: None, a float or a tensor."""
        if self.mode == "none":
            return None
        if self.mode == "fixed":
            return self.m
        return distance_margin(phi, self.k)


@dataclass(frozen=True)
class OptimConfig:
    """SGD with ``lr = base_lr * batch_size / 256`` and an optional per-epoch cosine decay.

    ``warmup_epochs`` ramps the lr linearly up to its peak over the first epochs (epoch ``e`` of
    ``W`` trains at ``(e + 1) / W`` of it), and the schedule then runs over the epochs left.
    ``fix_predictor_lr`` keeps the predictor at the initial lr, as in SimSiam's ImageNet recipe.
    """

    base_lr: float = 0.03
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: int = 0
    fix_predictor_lr: bool = False

    def __post_init__(self) -> None:
        check_range("optim.base_lr", self.base_lr, 0, low_open=True)
        check_range("optim.momentum", self.momentum, 0, 1, high_open=True)
        check_range("optim.weight_decay", self.weight_decay, 0)
        check_choice("optim.schedule", self.schedule, ("cosine", "constant"))
        check_range("optim.warmup_epochs", self.warmup_epochs, 0, integer=True)
        check_choice("optim.fix_predictor_lr", self.fix_predictor_lr, (False, True))


DEFAULT_KNN_K = 200


@dataclass(frozen=True)
class KnnConfig:
    """Weighted kNN on the backbone's features (SimSiam's monitor: k=200, temperature 0.1),
    every ``every`` epochs. ``k`` never exceeds the smallest class of the kNN bank: unset, it is
    ``min(200, smallest class)``; set above it, the config is refused (see
    :attr:`~trainables.data.DatasetInfo.smallest_class`)."""

    k: int | None = None
    temperature: float = 0.1
    every: int = 1

    def __post_init__(self) -> None:
        if self.k is not None:
            check_range("knn.k", self.k, 1, integer=True)
        check_range("knn.temperature", self.temperature, 0, low_open=True)
        check_range("knn.every", self.every, 1, integer=True)


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    views: ViewConfig = field(default_factory=ViewConfig)
    photometric: PhotometricConfig = field(default_factory=PhotometricConfig)
    margin: MarginConfig = field(default_factory=MarginConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    knn: KnnConfig = field(default_factory=KnnConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    epochs: int = 10
    batch_size: int = 256
    seed: int = 0
    device: str = "auto"
    loader_workers: int = 0

    def __post_init__(self) -> None:
        check_range("epochs", self.epochs, 1, integer=True)
        check_range("batch_size", self.batch_size, 2, integer=True)
        check_range("seed", self.seed, 0, integer=True)
        check_choice("device", self.device, ("auto", "cpu", "cuda"))
        check_range("loader_workers", self.loader_workers, 0, integer=True)
        if self.optim.warmup_epochs >= self.epochs:
            raise ConfigError(
                "optim.warmup_epochs",
                self.optim.warmup_epochs,
                f"an integer in [0, {self.epochs - 1}]: "
                f"the warm-up must end before the last of the {self.epochs} epochs",
            )
        self._check_views_fit_images()
        smallest = DATASETS[self.data.eval_dataset].smallest_class
        if self.knn.k is None:
            object.__setattr__(
                self,
                "knn",
                dataclasses.replace(self.knn, k=min(DEFAULT_KNN_K, smallest or DEFAULT_KNN_K)),
            )
        elif smallest is not None and self.knn.k > smallest:
            raise ConfigError(
                "knn.k",
                self.knn.k,
                f"1..{smallest}: the smallest class of {self.data.eval_dataset}'s kNN bank "
                f"has {smallest} images",
            )

    def _check_views_fit_images(self) -> None:
        dataset = DATASETS[self.data.dataset]
        try:
            self.views.build().check_image(*dataset.image_size)
        except ConfigError as error:
            raise ConfigError(
                f"views.params.{error.field.split('.', 1)[1]}",
                error.value,
                f"{error.valid} ({self.data.dataset}'s images are "
                f"{dataset.image_size[0]}x{dataset.image_size[1]})",
            ) from None

    @property
    def lr(self) -> float:
        return self.optim.base_lr * self.batch_size / 256

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return build(cls, data, prefix="")

    def replace(self, **overrides: Any) -> TrainConfig:
        """A copy with dotted-path overrides, e.g. ``replace(**{"views.params.overlap": 0.3})``
        (see :func:`apply_overrides`)."""
        data = self.to_dict()
        apply_overrides(data, overrides)
        return TrainConfig.from_dict(data)


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections to dotted paths, the inverse of :func:`set_path`:
    ``{"views.params.overlap": 0.3}``."""
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


FAMILY_PATH = "views.family"


def switch_family(data: dict[str, Any], family: Any) -> None:
    """Set the views' family in a config mapping; a different family starts with no params,
    since the old ones (a recipe's ``distribution`` of ``random_crop``, say) are not its own."""
    views = data.setdefault("views", {})
    if views.get("family", ViewConfig.family) != family:
        views["params"] = {}
    views["family"] = family


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Set dotted-path overrides on a config mapping, ``views.family`` first (which clears the
    params of another family, :func:`switch_family`), then the rest in order."""
    if FAMILY_PATH in overrides:
        switch_family(data, overrides[FAMILY_PATH])
    for path, value in overrides.items():
        if path != FAMILY_PATH:
            set_path(data, path, value)


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set ``data["a"]["b"] = value`` for ``path="a.b"``, creating mappings along the way."""
    *parents, leaf = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(path, value, f"a path into a section, but {key!r} is not one")
    node[leaf] = value


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def build(cls: type, data: Any, prefix: str) -> Any:
    """Build dataclass ``cls`` from a mapping, recursing into dataclass-typed fields."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(prefix.rstrip(".") or cls.__name__, data, "a mapping of fields")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            prefix + unknown[0], data[unknown[0]], "one of the fields " + ", ".join(sorted(fields))
        )
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if _is_dataclass_type(hint):
            kwargs[name] = build(hint, value, f"{prefix}{name}.")
        elif not matches(value, hint):
            raise ConfigError(prefix + name, value, type_name(hint))
        elif _is_tuple(hint) and isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` (as read from YAML or JSON) fits the type ``hint``; ints fit floats, and
    lists fit tuples."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is tuple or origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(matches(item, args[0]) for item in value)
        return not args or (
            len(args) == len(value) and all(matches(item, arg) for item, arg in zip(args, value))
        )
    if hint is dict or origin is dict:
        return (
            isinstance(value, dict) and all(matches(key, args[0]) for key in value)
            if args
            else isinstance(value, dict)
        )
    if hint is list or origin is list:
        return isinstance(value, list) and (
            not args or all(matches(item, args[0]) for item in value)
        )
    return isinstance(value, hint) if isinstance(hint, type) else True


TYPE_WORDS = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
    type(None): "null",
}


def type_name(hint: Any) -> str:
    """``an integer``, ``a number or null``, ``a list of numbers``: a type as a YAML user
    reads it."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(arg) for arg in args)
    if hint in TYPE_WORDS:
        return TYPE_WORDS[hint]
    if hint is tuple or origin is tuple or hint is list or origin is list:
        return f"a list of {type_name(args[0])} values" if args else "a list"
    if hint is dict or origin is dict:
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def _is_tuple(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_is_tuple(arg) for arg in typing.get_args(hint))
    return hint is tuple or origin is tuple
