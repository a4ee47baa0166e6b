"""Probes: run a student's function on inputs drawn from a seed and return what it produced, as plain data.

Grading runs the student's code inside a sandbox that holds neither the reference nor the verdict logic
(docs/design.md, section 7). A probe is the part that runs in there: it calls the student's function on
seeded inputs and records the results; a judge (autograde.checks.<assignment>.judge_*) regenerates the same
inputs from the same seed outside the sandbox and decides. So a probe
  - imports only the standard library, torch, `lib` and (relatively) this package: the sandbox mounts this
    folder as a top-level package `probes`, where `import autograde` fails;
  - has no verdict logic: it measures, the judge asserts;
  - never raises because of the student's code: every call is wrapped (`attempt`) and a failure is recorded
    as {"error": "TypeError: ..."};
  - returns only what `torch.load(..., weights_only=True)` reads back after `torch.save` (`plain`): str keys,
    plain tensors (detached, cpu, contiguous copies), str, int, float, bool, None, lists, tuples and dicts;
  - leaves the caller's random state alone (`seeded`); the input generators live in the probe modules and
    are imported by the judges too, so the inputs are defined in one place.
"""
from __future__ import annotations

import contextlib
import hashlib
import random
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:     # hints only: nothing more is imported in the sandbox
    from collections.abc import Callable, Iterator
    from typing import Any

ERROR_CHARS = 300            # an error message is cut to this length
MAX_ELEMENTS = 1 << 20       # a tensor bigger than this is not copied into a record (a few MB at most)
_MAX_DEPTH = 12              # nesting depth `plain` follows


def derive(seed: int | str, *labels: int | str) -> int:
    """A sub-seed in [0, 2**62) for one part of a probe, from the grading seed (any int; a fixed str for the
    models of the notebooks' visible tests) and some labels.

    Each generator draws from its own sub-seed, so adding a case to one part leaves the others' inputs
    unchanged, and any int (negative, or far above 2**64) is a valid grading seed.
    """
    text = "/".join(str(part) for part in (seed, *labels))
    return int(hashlib.sha256(text.encode()).hexdigest()[:15], 16) >> 2


def generator(seed: int | str, *labels: int | str) -> torch.Generator:
    """A private torch.Generator seeded from derive(seed, *labels): draws from it leave the global RNG alone."""
    return torch.Generator().manual_seed(derive(seed, *labels))


@contextlib.contextmanager
def seeded(seed: int | str, *labels: int | str) -> Iterator[None]:
    """Run the block with torch's and Python's global RNGs seeded from (seed, labels), then restore the
    caller's states: model constructors draw from the global RNG, and so may the student's code."""
    python_state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive(seed, *labels))
        random.seed(derive(seed, *labels))
        try:
            yield
        finally:
            random.setstate(python_state)


def away_from_zero(x: torch.Tensor, low: float = 0.05) -> torch.Tensor:
    """`x` with every |value| raised to at least `low`, keeping its sign (0 becomes +low).

    Used for values that must visibly differ from 0 (a gradient, a BN bias), so that a bug that adds
    something proportional to them, or to their sign, shows.
    """
    return torch.where(x < 0, -1.0, 1.0) * x.abs().clamp_min(low)


def text(value: object, limit: int = ERROR_CHARS) -> str:
    """str(value) cut to `limit` characters, as an exact str (never a subclass), never raising."""
    try:
        s = str(value)
    except BaseException:   # a student's object whose __str__ raises
        s = f"<unprintable {type(value).__name__}>"
    s = s.encode("utf-8", "replace").decode("utf-8")   # bytes.decode gives an exact str
    return s if len(s) <= limit else s[:limit - 3] + "..."


def error_text(error: BaseException) -> str:
    """'TypeError: message' for an exception, cut to ERROR_CHARS characters."""
    return text(f"{text(type(error).__name__)}: {text(error)}")


def attempt(function: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, dict[str, str] | None]:
    """(function(*args, **kwargs), None), or (None, {"error": "<type>: <message>"}) when it raises.

    Anything the student's code raises is caught (SystemExit too), except KeyboardInterrupt.
    """
    try:
        return function(*args, **kwargs), None
    except KeyboardInterrupt:
        raise
    except BaseException as error:   # the student's code may raise anything, even SystemExit
        return None, {"error": error_text(error)}


def backward(loss: Callable[[], Any], leaf: torch.Tensor) -> dict[str, torch.Tensor | str | None]:
    """{"grad": leaf.grad (None when no gradient reached it)} after loss().backward(), or {"backward_error": ...}.

    loss: a function returning what the student's code produced (maybe not even a tensor).
    """
    _, error = attempt(lambda: loss().backward())
    return {"backward_error": error["error"]} if error else {"grad": leaf.grad}


def plain_tensor(value: object) -> torch.Tensor:
    """A plain torch.Tensor copy of `value` (a tensor, a tensor subclass, a number or a nested list):
    detached, on the CPU, contiguous. Raises (TypeError, ValueError...) when that is not possible.

    A tensor subclass could lie through __torch_function__ or override methods in Python, so the copy is
    made with subclass dispatch disabled and through the base class's methods.
    """
    with torch._C.DisableTorchFunctionSubclass():
        tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
        tensor = torch.Tensor.detach(tensor)
        if torch.Tensor.numel(tensor) > MAX_ELEMENTS:
            raise ValueError(f"a tensor of {torch.Tensor.numel(tensor)} elements is too big to record")
        tensor = torch.Tensor.contiguous(torch.Tensor.clone(torch.Tensor.cpu(tensor)))
        tensor = torch.Tensor.as_subclass(tensor, torch.Tensor)
    if type(tensor) is not torch.Tensor or tensor.layout != torch.strided:
        raise TypeError(f"cannot copy a {type(value).__name__} as a plain tensor")
    return tensor


def describe(value: object) -> dict[str, Any]:
    """What a student's function returned, for the judge.

    {"type": <type name>, "tensor": <plain copy>, "requires_grad": bool} for a tensor;
    {"type": <type name>} for anything else (or a tensor that cannot be copied, plus its "error").
    """
    entry: dict[str, Any] = {"type": text(type(value).__name__, 100)}
    if isinstance(value, torch.Tensor):
        try:
            # the base class's descriptor, which a subclass cannot override (torch's stubs declare it a bool)
            entry["requires_grad"] = bool(torch.Tensor.requires_grad.__get__(value))  # type: ignore[attr-defined]
            entry["tensor"] = plain_tensor(value)
        except Exception as error:
            entry["error"] = error_text(error)
    return entry


def plain(value: object, depth: int = 0) -> Any:
    """A copy of `value` made only of what torch.load(weights_only=True) reads back: exact str keys; plain
    tensors; str, int, float, bool, None; lists, tuples and dicts of these. Anything else (an object of
    the student's, a value nested too deep) becomes {"error": ...}. Never raises."""
    try:
        if depth > _MAX_DEPTH:
            return {"error": "nested too deep to record"}
        if value is None or type(value) in (bool, int, float, str):
            return value
        if isinstance(value, torch.Tensor):
            return plain_tensor(value)
        if isinstance(value, str):      # subclasses (an IntEnum, a str subclass...): their exact base value
            return text(value)
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return float(value)
        if isinstance(value, dict):
            return {text(k, 200): plain(v, depth + 1) for k, v in dict.items(value)}
        if isinstance(value, (list, tuple)):
            items = [plain(v, depth + 1) for v in (list.__iter__(value) if isinstance(value, list)
                                                    else tuple.__iter__(value))]
            return tuple(items) if isinstance(value, tuple) else items
        return {"error": f"cannot record a {text(type(value).__name__, 100)}"}
    except Exception as error:
        return {"error": error_text(error)}
