"""What the check modules share: the visible-check failure, reading a probe's record, loading a run.

Two kinds of failure. A judge or an artifact check first re-evaluates the conditions the notebook's own
(visible) test asserts, and raises VisibleCheckFailed when one fails; then its hidden conditions raise a
plain AssertionError. The referee reports a cell whose own test passed while the grader raised
VisibleCheckFailed as possible tampering (autograde/referee.py). So VisibleCheckFailed is raised only where
the notebook's test saw the very same data: a missing or unreadable file, or a history trained with other
settings (the notebook then trained a short fallback run, lib.train.fit_or_load), is a plain
AssertionError.

A probe's record (autograde/probes) comes from the student's process and is untrusted: the readers here turn
anything missing, of the wrong type or shape into an AssertionError with a message, never another exception.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

import torch

from lib.artifacts import history_path
from lib.checkpoint import CheckpointError, load_checkpoint, load_model
from lib.train import History, artifacts_mismatch, evaluate

if TYPE_CHECKING:
    from torch import nn
    from torch.utils.data import DataLoader

    from lib.checkpoint import ModelT

# A checkpoint re-evaluated here may differ from the accuracy its history recorded by a few examples (another
# device, another BLAS): 1 point of accuracy is 3-4 of the 360 quick-profile test images, 1 of the 142
# quick-profile validation images (one is 0.70 points), ~4 of the ~420 quick-profile validation clips.
ACCURACY_TOLERANCE = 1.0

ValueT = TypeVar("ValueT")                      # the type `field` checks a record's entry against


class VisibleCheckFailed(AssertionError):
    """A condition that the notebook's own (visible) test asserts does not hold on the graded data."""


def visible(condition: bool | torch.Tensor, message: str) -> None:
    """Raise VisibleCheckFailed(message) unless `condition`."""
    if not condition:
        raise VisibleCheckFailed(message)


def judge_in_order(visible_part: Callable[[], None], hidden_part: Callable[[], None]) -> None:
    """Run visible_part() (the notebook's own asserts, raising VisibleCheckFailed), then hidden_part().

    When a visible condition fails, the hidden part still runs: its message usually names the mistake (the
    wrong sign, the missing T^2...), so it is appended to the visible one, and the whole is raised as
    VisibleCheckFailed. Any other AssertionError of the visible part (an unreadable record) is raised at once.
    """
    try:
        visible_part()
        failure = None
    except VisibleCheckFailed as error:
        failure = error
    try:
        hidden_part()
    except AssertionError as hidden:
        if failure is None:
            raise
        raise VisibleCheckFailed(f"{failure}\n{hidden}") from None
    if failure is not None:
        raise failure


# ------------------------------------------------------------------------------------- reading a record

class _Unreadable(AssertionError):
    """A probe's record that lacks something or holds the wrong type: tampered with, or the probe broke."""


def _unreadable(what: str, detail: str) -> _Unreadable:
    return _Unreadable(f"{what}: the grader could not read what your code produced ({detail}); re-run the "
                       "notebook from the top, and ask the TA if this message stays")


def probe_record(record: object, name: str) -> dict[str, Any]:
    """The probe's record of the student's `name` as a dict; an AssertionError when the probe could not run
    at all (it recorded {"error": ...} only, e.g. a NameError: the function was never defined)."""
    if isinstance(record, dict) and set(record) == {"error"}:
        raise AssertionError(f"the grader could not run your {name}: {record['error']}")
    if not isinstance(record, dict):
        raise _unreadable(name, f"expected a dict, found {type(record).__name__}")
    return record


@overload
def field(record: object, key: str, what: str, kind: type[ValueT]) -> ValueT: ...
@overload
def field(record: object, key: str, what: str, kind: tuple[type, ...] | None = None) -> Any: ...
def field(record: object, key: str, what: str, kind: type | tuple[type, ...] | None = None) -> Any:
    """record[key], checked to exist and (when `kind` is given) to be an instance of `kind`.

    With a class as `kind`, type checkers know the result's type: field(entry, "type", what, str) is a str."""
    if not isinstance(record, dict):
        raise _unreadable(what, f"expected a dict, found {type(record).__name__}")
    if key not in record:
        raise _unreadable(what, f"no entry {key!r}")
    value = record[key]
    if kind is not None and not isinstance(value, kind):
        raise _unreadable(what, f"{key!r} is a {type(value).__name__}")
    return value


def length_field(record: object, key: str, what: str) -> int | None:
    """record[key] as an int or None (a length the probe recorded)."""
    value = field(record, key, what)
    if value is not None and type(value) is not int:
        raise _unreadable(what, f"{key!r} is a {type(value).__name__}")
    return value


def entries(record: object, key: str, what: str, length: int) -> list[dict[str, Any]]:
    """record[key] as a list of exactly `length` entries (one per input the judge regenerated)."""
    value = field(record, key, what, (list, tuple))
    if len(value) != length:
        raise _unreadable(what, f"{len(value)} results in {key!r}, {length} expected")
    for item in value:
        if not isinstance(item, dict):
            raise _unreadable(what, f"a result in {key!r} is a {type(item).__name__}")
    return list(value)


def as_tensor(value: object, what: str, shape: Sequence[int] | None = None,
              dtype: torch.dtype | None = None) -> torch.Tensor:
    """`value` as a torch.Tensor, checked to have `shape` (when given) and converted to `dtype` (when given)."""
    if type(value) is not torch.Tensor:
        raise _unreadable(what, f"expected a tensor, found {type(value).__name__}")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise _unreadable(what, f"a tensor of shape {tuple(value.shape)}, expected {tuple(shape)}")
    if dtype is not None:
        if value.is_complex():
            raise _unreadable(what, "a complex tensor")
        value = value.to(dtype)
    return value


def tensor_field(record: object, key: str, what: str, shape: Sequence[int] | None = None,
                 dtype: torch.dtype | None = None) -> torch.Tensor:
    """record[key] as a tensor (see as_tensor): the "get tensor from record or fail with a message" helper."""
    return as_tensor(field(record, key, what), what, shape, dtype)


def failed_call(entry: object) -> str | None:
    """The error text when a probe recorded that the student's code raised ({"error": ...}), else None."""
    if isinstance(entry, dict) and "error" in entry:
        return str(entry["error"])
    return None


def raise_if_failed(entry: object, call: str) -> None:
    """Raise an AssertionError naming `call` when `entry` records an exception of the student's code."""
    error = failed_call(entry)
    if error is None:
        return
    if error.startswith("NotImplementedError"):
        raise AssertionError(f"{call}: not implemented yet (it raises NotImplementedError); write the TODO")
    raise AssertionError(f"{call} raised {error}")


# --------------------------------------------------------------------------------------- loading a run

def load_run(path: str | Path, model_class: type[ModelT], **kwargs: Any) -> tuple[ModelT, dict[str, Any], History]:
    """(model with the checkpoint's weights, meta, History) of the checkpoint `path` and its .json history.

    A missing or unreadable file is an AssertionError carrying lib's message (file, what is wrong, what to do).
    """
    path = Path(path)
    try:
        model, meta = load_model(path, model_class, **kwargs)
        history = History.load(history_path(path))
    except (CheckpointError, FileNotFoundError, ValueError) as error:
        raise AssertionError(str(error)) from None
    return model, meta, history


def load_history(path: Path) -> History:
    """The History stored at `path` (a .json next to a checkpoint); AssertionError when missing or unreadable."""
    try:
        return History.load(path)
    except (FileNotFoundError, ValueError) as error:
        raise AssertionError(str(error)) from None


def record_at(history: History, meta: dict[str, Any], path: Path) -> dict[str, Any]:
    """The history record of the epoch whose weights the checkpoint `path` holds (its meta's epoch)."""
    assert "epoch" in meta, f"{path} has no epoch in its meta: save it with lib.train.fit / fit_or_load"
    records = [r for r in history.records if r.get("epoch") == meta["epoch"]]
    assert records, f"{path} was saved at epoch {meta['epoch']}, but its history has no record of that epoch"
    return records[0]


def best_accuracy(history: History | None) -> float | None:
    """The best recorded val_accuracy of a history (the validation accuracy the notebooks' visible tests
    read), or None (no history, or no readable accuracy in it)."""
    if history is None:
        return None
    try:
        return float(history.best["val_accuracy"])
    except (KeyError, TypeError, ValueError):
        return None


def loaded_as_submitted(path: str | Path, hp: dict[str, Any], cfg: Sequence[int | str] | None = None) -> bool:
    """True when, while grading, lib.train.fit_or_load loads the submitted checkpoint `path` and its .json
    history for a run with hyperparameters `hp` and a model of `cfg` (None: whatever cfg the checkpoint has).
    Otherwise it trains a short fallback run, and the notebook's visible test sees that run, not these files."""
    path = Path(path)
    if cfg is None:
        try:
            cfg = load_checkpoint(path)["cfg"]
        except CheckpointError:
            return False
    # fit_or_load's own test (private to lib.train), so that the two can never disagree
    return artifacts_mismatch(cfg, hp, path, history_path(path)) is None


def checked_test_accuracy(model: nn.Module, loaders: dict[str, DataLoader], record: dict[str, Any],
                          path: str | Path) -> float:
    """`model`'s accuracy on loaders["test"], the graded figure, after checking its accuracy on loaders["val"]
    against the validation accuracy its history recorded for the checkpoint's epoch (`record`): checkpoints
    are selected on the validation split, so that is the number the history can vouch for."""
    checked_accuracy(model, loaders["val"], record["val_accuracy"], path, split="validation")
    return evaluate(model, loaders["test"], device=torch.device("cpu"), progress=False)[1]


def checked_accuracy(model: nn.Module, loader: DataLoader, recorded: float, path: str | Path,
                     split: str = "test") -> float:
    """`model`'s accuracy on `loader` (the `split`), after checking it against the accuracy its history
    recorded for the checkpoint's epoch (`recorded`): a different number means another run's history."""
    _, accuracy = evaluate(model, loader, device=torch.device("cpu"), progress=False)
    assert abs(accuracy - recorded) <= ACCURACY_TOLERANCE, (
        f"{path} evaluates to {accuracy:.2f}% on the {split} split, but its history recorded {recorded:.2f}% "
        "for that epoch: the checkpoint and its history are from different runs; re-run the training cell")
    return accuracy

