"""Helpers of the probe and judge tests: probe records as the referee reads them, and records tampered with."""
import io

import torch


def round_trip(record):
    """The record as the referee reads it back: torch.save, then torch.load(weights_only=True)."""
    buffer = io.BytesIO()
    torch.save(record, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def same_plain_data(a, b):
    if isinstance(a, torch.Tensor):
        return type(b) is torch.Tensor and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_plain_data(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same_plain_data, a, b))
    return type(a) is type(b) and a == b


class Liar(torch.Tensor):
    """A tensor subclass that reports zeros to anyone who detaches or clones it."""
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        result = super().__torch_function__(func, types, args, kwargs or {})
        return torch.zeros(3) if func in (torch.Tensor.detach, torch.Tensor.clone) else result


def tamperings(record, rng, count=40):
    """`count` copies of `record`, each with one entry somewhere removed, or replaced by a string, None, a
    tensor of another shape, or a list."""
    def paths(value, path=()):
        yield path
        children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(
            value, (list, tuple)) else ()
        for key, child in children:
            yield from paths(child, path + (key,))

    def replaced(value, path, new):
        if not path:
            return new
        key, rest = path[0], path[1:]
        if isinstance(value, dict):
            copy_ = dict(value)
            if new is DELETE and not rest:
                del copy_[key]
            else:
                copy_[key] = replaced(value[key], rest, new)
            return copy_
        items = list(value)
        if new is DELETE and not rest:
            del items[key]
        else:
            items[key] = replaced(items[key], rest, new)
        return type(value)(items)

    chosen = rng.sample(list(paths(record)), min(count, sum(1 for _ in paths(record))))
    for i, path in enumerate(chosen):
        new = [DELETE, "a string", None, torch.zeros(2, 3, 5), [1, 2]][i % 5]
        yield replaced(record, path, new)


DELETE = object()   # tamperings: remove the entry instead of replacing it


def judge_each_tampering(judge, record, rng, count=40):
    """Call judge(tampered) on each of tamperings(record, rng, count). A verdict (AssertionError) is fine; any
    other exception escapes and fails the calling test: a mangled record must never crash the grader."""
    for tampered in tamperings(record, rng, count):
        try:
            judge(tampered)
        except AssertionError:
            pass
