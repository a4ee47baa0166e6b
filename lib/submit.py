"""Hand in an assignment as one zip file, for a course that collects work by upload (Moodle, Canvas...).

    python -m lib.submit slimming            # writes slimming.zip in the current folder: upload that file

The zip holds the assignment's notebooks and its `artifacts/` folder (checkpoints, histories, plots) under
one folder named after the assignment, and `manifest.json`: the size and SHA-256 of every file, which the
grader checks, so that a file damaged or changed after zipping is noticed. Before writing it, the command
tells you what would cost you points: a notebook or an artifact that is missing (and which notebook writes
it), or a file bigger than the grader accepts.

The assignment folder is found as `labs/<assignment>` of this kit, or `<assignment>/` in the current folder
(where the course's JupyterHub fetches it), or the current folder itself; `--folder` names another.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import zipfile
from pathlib import Path

TYPE_CHECKING = False    # typing.TYPE_CHECKING without importing typing: nbgrader_config.py imports this module
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

MAX_FILE_KB = 200_000      # the grader's limit per file (its nbgrader_config.py takes it from here), in kB
SUFFIXES = (".ipynb", ".pt", ".json", ".png")   # what a submission holds; the grader collects these
MANIFEST = "manifest.json"

# (lib.artifacts and lib.profile import torch: they are imported where needed, so that the grader's
# nbgrader_config.py, which reads MAX_FILE_KB from here, starts every nbgrader command without it.)


def sha256(path: str | Path) -> str:
    """The SHA-256 of a file, as 64 hex digits (read in 1 MB blocks: checkpoints can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_folder(assignment: str, cwd: str | Path | None = None) -> Path:
    """The folder holding the assignment's notebooks (see the module's docstring); raises if there is none."""
    from . import artifacts
    from .profile import ROOT
    cwd = Path(cwd or Path.cwd())
    candidates = [cwd, cwd / assignment, ROOT / "labs" / assignment]
    first = artifacts.NOTEBOOKS[assignment][0]
    for folder in candidates:
        if (folder / f"{first}.ipynb").is_file():
            return folder
    raise FileNotFoundError(f"found no {first}.ipynb in {', '.join(str(c) for c in candidates)}: "
                            f"run this command next to your {assignment} folder, or give it with --folder")


def files_to_submit(folder: Path) -> list[str]:
    """The notebooks at the top of `folder` and every file under its artifacts/, as sorted relative paths."""
    found = sorted(folder.glob("*.ipynb")) + sorted(p for p in (folder / "artifacts").rglob("*") if p.is_file())
    return [p.relative_to(folder).as_posix() for p in found if p.suffix in SUFFIXES]


def problems(assignment: str, folder: Path, files: Sequence[str]) -> list[str]:
    """What would cost points, as sentences: missing notebooks or artifacts, files over the size limit."""
    from . import artifacts
    found = [f"{nb}.ipynb is missing" for nb in artifacts.NOTEBOOKS[assignment] if f"{nb}.ipynb" not in files]
    found += [f"missing {what}" for what in artifacts.missing(assignment, folder)]
    for name in files:
        size = (folder / name).stat().st_size
        if size > MAX_FILE_KB * 1000:
            found.append(f"{name} is {size / 1e6:.0f} MB, over the grader's {MAX_FILE_KB / 1000:.0f} MB per file: "
                         "it would not be graded")
    return found


def manifest(assignment: str, folder: Path, files: Sequence[str]) -> dict[str, Any]:
    """{"assignment", "files": {relative path: {"bytes", "sha256"}}} of the files to submit."""
    return {"assignment": assignment,
            "files": {name: {"bytes": (folder / name).stat().st_size, "sha256": sha256(folder / name)}
                      for name in files}}


def write_zip(assignment: str, folder: Path, out: str | Path) -> list[str]:
    """Zip `folder`'s notebooks and artifacts under `<assignment>/`, with the manifest; returns the problems."""
    files = files_to_submit(folder)
    found = problems(assignment, folder, files)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in files:
            archive.write(folder / name, f"{assignment}/{name}")
        archive.writestr(f"{assignment}/{MANIFEST}", json.dumps(manifest(assignment, folder, files), indent=1))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    from . import artifacts
    parser = argparse.ArgumentParser(description="Zip an assignment (notebooks + artifacts/) for upload.")
    parser.add_argument("assignment", choices=sorted(artifacts.NOTEBOOKS))
    parser.add_argument("--folder", type=Path, help="the assignment folder (default: found as described above)")
    parser.add_argument("--out", type=Path, help="the zip to write (default: <assignment>.zip here)")
    args = parser.parse_args(argv)
    try:
        folder = args.folder or find_folder(args.assignment)
    except FileNotFoundError as error:
        print(f"lib.submit: {error}", file=sys.stderr)
        return 2
    out = args.out or Path(f"{args.assignment}.zip")
    found = write_zip(args.assignment, folder, out)
    print(f"Wrote {out.resolve()} from {folder.resolve()}: upload this file.")
    if found:
        print("Before you upload, note what would cost you points:\n  " + "\n  ".join(found))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
