"""Data sets of the labs: images.py (CIFAR-10, embedded digits) and speech.py (Speech Commands, embedded keywords)."""
import hashlib
from pathlib import Path


def check_sha256(path: str | Path) -> None:
    """Raise ValueError unless `path` matches the sha256 recorded for it in SHA256SUMS beside it."""
    path = Path(path)
    sums = dict(line.split()[::-1] for line in (path.parent / "SHA256SUMS").read_text().splitlines() if line.strip())
    expected = sums.get(path.name)
    found = hashlib.sha256(path.read_bytes()).hexdigest()
    if found != expected:
        raise ValueError(f"{path} is corrupt or was changed: expected sha256 {expected}, found {found}; "
                         f"restore it with `git checkout -- {path.name}` in {path.parent}")
