"""What grading one submission found, as the TA's results.json and console show it."""
from __future__ import annotations

import html
import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

STATUSES = ("graded", "failed", "timeout", "interrupted")


@dataclass
class Result:
    """One submission's grading: one entry of grading/cohort/<assignment>/results.json.

    status: "graded"; "failed" (a notebook could not be graded, or its grades not merged); "timeout";
    "interrupted" (Ctrl-C came before its nbgrader started).
    problems: {notebook, or "(files)" for the whole submission, or "(merge)": [messages]}; each message is
    shown at the top of the student's feedback and on the TA's console.
    """
    student: str
    status: str = "graded"
    seconds: float = 0.0
    problems: dict[str, list[str]] = field(default_factory=dict)
    sandbox: bool = True                                         # False: graded with --no-sandbox
    manifest_mismatch: list[str] = field(default_factory=list)   # an LMS upload's files against its manifest
    verdicts_disagree: list[str] = field(default_factory=list)   # cells whose own test passed and the referee's not
    unrefereed: list[str] = field(default_factory=list)          # cells scored with no referee verdict
    similar_to: list[str] = field(default_factory=list)          # students whose checkpoints are (nearly) these

    def add_problem(self, where: str, message: str) -> None:
        self.problems.setdefault(where, []).append(message)

    def flags(self) -> list[str]:
        """What the TA must look at in this submission, as sentences."""
        flags = []
        if not self.sandbox:
            flags.append("graded WITHOUT the sandbox (--no-sandbox)")
        for cell in self.verdicts_disagree:
            flags.append(f"{cell}: verdicts disagree: possible tampering (the notebook's own test passed, the "
                         "referee found the condition it asserts broken)")
        if self.manifest_mismatch:
            flags.append(f"files differ from the manifest of the zip it uploaded: {'; '.join(self.manifest_mismatch)}")
        if self.similar_to:
            flags.append(f"checkpoints identical or nearly identical to those of {', '.join(self.similar_to)}")
        if self.unrefereed:
            flags.append(f"cells scored from the notebook's own outputs (no referee verdict): "
                         f"{', '.join(self.unrefereed)}")
        return flags


def load(path: Path) -> dict[str, Result]:
    """The results saved in `path` ({} if there is none); keys it does not know (an older kit's) are dropped."""
    if not path.exists():
        return {}
    known = {f.name for f in fields(Result)}
    return {student: Result(**{k: v for k, v in saved.items() if k in known})
            for student, saved in json.loads(path.read_text()).items()}


def save(path: Path, results: dict[str, Result]) -> None:
    """Write `results` to `path` atomically: a run stopped mid-write leaves the previous file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({student: asdict(result) for student, result in results.items()}, indent=1))
    os.replace(tmp, path)


def markdown_literal(text: Any) -> str:
    """`text` (a file name, a cell id: the student's words) shown as it is in a markdown cell: printable, HTML's
    special characters as entities and markdown's punctuation escaped, so that it renders as plain text."""
    text = html.escape(printable(text), quote=False)
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~])", r"\\\1", text)


def printable(text: Any) -> str:
    """`text` safe to print and to write as UTF-8: control characters (but newlines and tabs) and lone
    surrogates, which a submission's file names and metadata may hold, become escapes. Student text reaches
    the TA's console: a cursor-moving escape sequence could erase the line that flags that student."""
    text = str(text).encode("utf-8", "backslashreplace").decode("utf-8")
    return re.sub(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", lambda m: f"\\x{ord(m.group()):02x}", text)
