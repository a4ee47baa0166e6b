"""Save and load models as {cfg, state_dict, meta}: the cfg rebuilds the (possibly pruned) architecture.

Loading uses torch.load(weights_only=True): a checkpoint can then hold only tensors and plain Python
values, never code, so loading a classmate's or a submitted file cannot run anything.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypedDict, TypeVar, cast

import torch

from .grading import may_write
from .artifacts import explain

if TYPE_CHECKING:
    from .models import VGG, SincNet

    CfgModel: TypeAlias = VGG | SincNet     # a network that its cfg list describes: model.cfg rebuilds it

ModelT = TypeVar("ModelT", bound="CfgModel")


class Checkpoint(TypedDict):
    """The dict save_checkpoint writes and load_checkpoint returns."""
    cfg: list[Any]                         # the model's cfg: ints, and 'M' for a VGG's max-pools
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any]                   # plain values: epoch, val_accuracy...


class CheckpointError(ValueError):
    """A checkpoint file that is missing, unreadable, or does not fit the model it is loaded into."""


def save_checkpoint(path: str | Path, model: CfgModel, meta: dict[str, Any] | None = None) -> None:
    """Write `model` (which has a .cfg) to `path` with a dict of plain values `meta` (epoch, accuracy...)."""
    path = Path(path)
    if not may_write(path):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"cfg": list(model.cfg), "state_dict": state, "meta": dict(meta or {})}, path)


def save_json(path: str | Path, data: Any) -> None:
    """Write `data` (plain values: dicts, lists, numbers, strings) to `path` as JSON, e.g. a cfg."""
    path = Path(path)
    if not may_write(path):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def load_checkpoint(path: str | Path) -> Checkpoint:
    """The {cfg, state_dict, meta} dict stored at `path`, loaded on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(explain(path, f"{path}: no such checkpoint file"))
    _check_uncompressed(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated file, a pickle with code in it, not a torch file at all...
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(error).__name__}: {error}); "
                              "save it again with lib.checkpoint.save_checkpoint") from None
    if not isinstance(ckpt, dict) or not {"cfg", "state_dict"} <= set(ckpt):
        raise CheckpointError(f"{path}: expected a dict with keys cfg, state_dict, meta; "
                              "save it with lib.checkpoint.save_checkpoint")
    _check_storages(path, ckpt)
    ckpt.setdefault("meta", {})
    return cast(Checkpoint, ckpt)            # a dict with the keys checked above


def _check_storages(path: Path, value: object, depth: int = 0) -> None:
    """Every tensor in `value` owns at least its own bytes of storage. A saved view can repeat a small storage
    (stride 0): a file of a few KB would load as a tensor of billions of elements, and the first operation that
    copies it would take gigabytes. torch.save of a model's state_dict never writes such a view."""
    if depth > 16:
        raise CheckpointError(f"{path}: nested too deep; save it with lib.checkpoint.save_checkpoint")
    if isinstance(value, torch.Tensor):
        needed, stored = value.numel() * value.element_size(), value.untyped_storage().nbytes()
        if stored < needed:
            raise CheckpointError(f"{path}: holds a tensor of shape {tuple(value.shape)} on {stored} bytes of "
                                  f"storage (it needs {needed}): not a saved model; save it with "
                                  "lib.checkpoint.save_checkpoint")
    elif isinstance(value, dict):
        for item in value.values():
            _check_storages(path, item, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_storages(path, item, depth + 1)


def _check_uncompressed(path: Path) -> None:
    """torch.save stores a checkpoint's records uncompressed, so loading one takes about its size in memory.
    A compressed record (which torch.load also reads) could unpack to a thousand times the file's size."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any(info.compress_type != zipfile.ZIP_STORED for info in archive.infolist()):
                raise CheckpointError(f"{path}: its records are compressed, which torch.save never does; "
                                      "save it with lib.checkpoint.save_checkpoint")


def load_into(model: CfgModel, path: str | Path) -> dict[str, Any]:
    """Copy the weights stored at `path` into `model`; returns the checkpoint's meta dict.

    The checkpoint's cfg must equal model.cfg: a network pruned to another cfg has other tensor
    shapes, and the error says which cfg to build instead.
    """
    return _copy_weights(model, load_checkpoint(path), path)


def _copy_weights(model: CfgModel, ckpt: Checkpoint, path: str | Path) -> dict[str, Any]:
    if list(ckpt["cfg"]) != list(model.cfg):
        raise CheckpointError(
            f"{path} was saved from a model with cfg {ckpt['cfg']}, but the model to load it into has cfg "
            f"{model.cfg}; build the model with the checkpoint's cfg (lib.checkpoint.load_model) "
            "or re-run the cell that saves this checkpoint")
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as error:
        raise CheckpointError(f"{path}: the weights do not fit {type(model).__name__}: {error}") from None
    return ckpt["meta"]


def load_model(path: str | Path, model_class: type[ModelT], **kwargs: Any) -> tuple[ModelT, dict[str, Any]]:
    """Build `model_class(cfg=<the checkpoint's cfg>, **kwargs)` and load the weights: (model, meta)."""
    return build_model(load_checkpoint(path), model_class, path, **kwargs)


def build_model(ckpt: Checkpoint, model_class: type[ModelT], path: str | Path,
                **kwargs: Any) -> tuple[ModelT, dict[str, Any]]:
    """load_model for a checkpoint already read with load_checkpoint(path): (model, meta)."""
    # Size the network on the "meta" device first (no memory): a cfg that does not fit the stored weights is
    # refused before it is built, however large it says the network is.
    try:
        with torch.device("meta"):
            shape = model_class(cfg=ckpt["cfg"], **kwargs)
    except Exception as error:
        raise CheckpointError(f"{path}: its cfg {str(ckpt['cfg'])[:200]} does not build a {model_class.__name__} "
                              f"({type(error).__name__}: {error})") from None
    stored = sum(t.numel() for t in ckpt["state_dict"].values() if isinstance(t, torch.Tensor))
    needed = sum(t.numel() for t in shape.state_dict().values())
    if stored != needed:
        raise CheckpointError(f"{path}: its cfg {str(ckpt['cfg'])[:200]} makes a {model_class.__name__} of "
                              f"{needed:,} values, but the checkpoint stores {stored:,}: it was not saved from "
                              "that network; re-run the cell that saves it")
    model = model_class(cfg=ckpt["cfg"], **kwargs)
    return model, _copy_weights(model, ckpt, path)
