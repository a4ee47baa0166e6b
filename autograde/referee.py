"""Trusted grading: the student's kernel runs in the sandbox, the scores are decided outside it.

Two nbgrader preprocessors replace `Execute` in `nbgrader autograde`'s pipeline (nbgrader_config.py and
autograde.cohort select them: autograde/trusted.py's AUTOGRADE_PREPROCESSORS):

  SandboxedExecute  runs the notebook in a kernel inside the bubblewrap sandbox (autograde.sandbox), on a
                    fresh writable copy of the submission. Hidden tests never reach the kernel (nbgrader's
                    ClearHiddenTests runs first). Right after a grade cell that tests a function (kd_loss,
                    STEQuantize...), it runs that function's *probe* in the same kernel: the probe calls the
                    student's function on inputs drawn from a secret seed chosen for this grading and saves
                    what came out as plain tensors (autograde/probes).
  Referee           decides every auto-graded cell in this trusted process: a function cell by *judging* the
                    probe's record against the reference (autograde.checks.*.judge_*), an artifact cell by
                    running the artifact checks on the submitted files (nbgrader's copy, which the sandbox never
                    sees). The verdict becomes the cell's only output that nbgrader scores; what the notebook's
                    own test printed is kept as plain text, and every output is sanitised (no HTML or
                    JavaScript, bounded size).

When the notebook's own (visible) test passed but the referee finds the very condition that test asserts
broken (VisibleCheckFailed), the student's process lied: the cell is reported as "verdicts disagree:
possible tampering" to the TA (Referee.report, read by the cohort runner).
"""
from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import stat
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbformat import NotebookNode
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from traitlets import Bool, Integer, Unicode

from .course import nbgrader_id
from .sandbox import Bounds, ResourceLimitError, SandboxedKernelManager
from .trusted import AUTOGRADE_PREPROCESSORS  # noqa: F401  (the pipeline these classes make up)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from jupyter_client.manager import KernelManager

RECORD_LIMIT = 64 * 2**20        # bytes: a probe's record is a few MB at most
TEXT_LIMIT = 20_000              # characters of text kept per output
IMAGE_LIMIT = 4 * 2**20          # characters of a base64 image kept
SAFE_MIME = ("text/plain", "image/png", "image/jpeg")   # nothing that a browser would run
BASE64 = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\n\r")   # an image's characters


# ------------------------------------------------------------------------------------------- the verdicts

@dataclass(frozen=True)
class Verdict:
    """How the referee decides one grade cell.

    function  the student's object probed right after the cell runs (None: an artifact-only cell)
    probe     "<module>.<function>" in autograde/probes, called as probe(function, seed[, artifacts=...])
    judge     judge(record, seed, artifacts) -> None, raises AssertionError (trusted, outside the sandbox)
    checks    artifact checks, each check(artifacts) -> None, raises AssertionError
    """
    function: str | None = None
    probe: str | None = None
    judge: Callable[[dict[str, Any], int, Path], None] | None = None
    checks: tuple[Callable[[Path], None], ...] = ()
    probe_reads_artifacts: bool = False

    def decide(self, record: object, seed: int, artifacts: Path) -> AssertionError | None:
        """None when the cell passes; else AssertionError (its subclass VisibleCheckFailed included)."""
        try:
            if self.judge is not None:
                if not isinstance(record, dict):
                    raise AssertionError(f"the grader could not call your {self.function}: {record}")
                self.judge(record, seed, artifacts)
            for check in self.checks:
                check(artifacts)
        except AssertionError as failure:
            return failure
        except Exception as error:       # a record or artifact the checks choke on: the student's, so no points
            return AssertionError(f"the grader could not check this cell: {type(error).__name__}: {error}")
        return None


def verdicts(assignment: str) -> dict[str, Verdict]:
    """{grade_id: Verdict} of every auto-graded cell of `assignment` ({} for an assignment the kit lacks)."""
    return {"slimming": _slimming, "sincnet_quant": _sincnet_quant, "kd": _kd}.get(assignment, dict)()


def _slimming() -> dict[str, Verdict]:
    from autograde.checks import slimming
    return {
        "test_update_bn": Verdict("update_bn", "slimming.probe_update_bn",
                                  lambda record, seed, _: slimming.judge_update_bn(record, seed)),
        "test_sparsity_curves": Verdict(checks=(slimming.check_sparsity_curves,)),
        "test_sparsity_accuracy": Verdict(checks=(slimming.check_sparsity_accuracy,)),
        "test_build_cfg_mask": Verdict("build_cfg_mask", "slimming.probe_build_cfg_mask",
                                       slimming.judge_build_cfg_mask, probe_reads_artifacts=True),
        "test_prune_vgg": Verdict("prune_vgg", "slimming.probe_prune_vgg",
                                  lambda record, seed, _: slimming.judge_prune_vgg(record, seed)),
        "test_absorb_constants": Verdict("absorb_constants", "slimming.probe_absorb_constants",
                                         lambda record, seed, _: slimming.judge_absorb_constants(record, seed)),
        "test_pruned_models": Verdict(checks=(slimming.check_pruned_models,)),
        "test_finetuned_accuracy": Verdict(checks=(slimming.check_finetuned,)),
    }


def _sincnet_quant() -> dict[str, Verdict]:
    from autograde.checks import sincnet_quant
    return {
        "test_float": Verdict(checks=(sincnet_quant.check_float_model,)),
        "test_pruned": Verdict(checks=(sincnet_quant.check_pruned_model,)),
        "test_ste_quantize": Verdict("STEQuantize", "sincnet_quant.probe_ste_quantize",
                                     lambda record, seed, _: sincnet_quant.judge_ste_quantize(record, seed)),
        "test_weight_scale": Verdict("weight_scale", "sincnet_quant.probe_weight_scale",
                                     lambda record, seed, _: sincnet_quant.judge_weight_scale(record, seed)),
        "test_qat": Verdict(checks=(sincnet_quant.check_quantized_model,)),
    }


def _kd() -> dict[str, Verdict]:
    from autograde.checks import kd, kd_runs
    return {
        "test_kd_loss": Verdict("kd_loss", "kd.probe_kd_loss", lambda record, seed, _: kd.judge_kd_loss(record, seed)),
        "test_kd_student": Verdict(checks=(kd.check_kd_student, kd_runs.check_kd_sweep,
                                           kd_runs.check_kd_distilled)),
    }


# ---------------------------------------------------------------------------------- execution, sandboxed

def probe_code(verdict: Verdict, seed: int, record_path: Path) -> str:
    """The code run in the student's kernel after the cell: probe the student's function, save the record."""
    assert verdict.probe is not None, "probe_code needs a verdict with a probe"
    module, function = verdict.probe.split(".")
    extra = ', artifacts="artifacts"' if verdict.probe_reads_artifacts else ""
    return (f"import torch as _grader_torch\n"
            f"from probes import {module} as _grader_probes\n"
            f"try:\n"
            f"    _grader_record = _grader_probes.{function}({verdict.function}, {seed}{extra})\n"
            f"except BaseException as _grader_error:   # e.g. NameError: the function was never defined\n"
            f"    _grader_record = {{'error': f'{{type(_grader_error).__name__}}: {{_grader_error}}'[:500]}}\n"
            f"_grader_torch.save(_grader_record, {str(record_path)!r})\n"
            f"del _grader_record, _grader_probes")


def read_record(path: str | Path) -> object:
    """A probe's record, loaded as plain data (weights_only: no code runs), or {'error': why not}.

    The record lies in the sandbox's writable folder, where student code may have put something else at its
    path: a link is not followed (the grader may be root: a link to /etc/shadow would be read with its rights),
    and only a regular file of at most RECORD_LIMIT bytes is read.
    """
    import torch
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return {"error": "the probe saved no record (the kernel died, or the cell was interrupted)"}
    except OSError as error:        # ELOOP: a symbolic link
        return {"error": f"the probe's record is not a file the grader reads ({type(error).__name__})"}
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            return {"error": "the probe's record is not a regular file"}
        if info.st_size > RECORD_LIMIT:
            return {"error": f"the probe's record is {info.st_size} bytes, over the {RECORD_LIMIT} limit"}
        data = file.read(RECORD_LIMIT + 1)
    try:
        return torch.load(io.BytesIO(data), weights_only=True)
    except Exception as error:
        return {"error": f"the probe's record could not be read ({type(error).__name__})"}


class SandboxedExecute(Execute):
    """nbgrader's Execute with the kernel in the sandbox, on a fresh copy of the submission, plus the probes."""

    sandbox = Bool(True, help="run the kernel in the bubblewrap sandbox (False: --no-sandbox)").tag(config=True)
    max_processes = Integer(Bounds.processes, help="processes the kernel may run at once (0: any)").tag(config=True)
    max_memory = Integer(Bounds.memory, help="bytes of memory, private and shared, all the kernel's processes "
                                             "together (0: any)").tag(config=True)
    max_disk = Integer(Bounds.disk, help="bytes the kernel may write to disk (0: any)").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: Any = None,   # nbconvert's signature; nbgrader gives both
                   km: KernelManager | None = None) -> tuple[NotebookNode, dict[str, Any]]:
        graded = Path(resources["metadata"]["path"])
        # A short path: the kernel's sockets live in it, and a Unix socket path has at most 107 bytes.
        self._box = Path(tempfile.mkdtemp(prefix="clbox-"))
        work = self._box / "work"
        # The submission's files as submitted (nbgrader's copy), without the notebooks being graded.
        shutil.copytree(graded, work, symlinks=False,
                        ignore=lambda folder, names: [n for n in names if Path(folder) == graded and
                                                      n.endswith(".ipynb")])
        referee = resources.setdefault("referee", {})
        referee.setdefault("seed", secrets.randbelow(2**31))
        referee["records"] = {}
        # The checks import torch and the data sets (seconds): do it while the kernel starts and runs.
        importer = ThreadPoolExecutor(1)
        self._verdicts = importer.submit(verdicts, resources["nbgrader"]["assignment"])
        importer.shutdown(wait=False)                 # the import finishes; no thread is left waiting after it
        km = SandboxedKernelManager(box=self._box, work=work, sandbox=self.sandbox,
                                    kernel_name=self.kernel_name or "python3",
                                    bounds=Bounds(self.max_processes, self.max_memory, self.max_disk))
        try:
            return super().preprocess(nb, resources, km=km)
        except Exception:
            if km.watchdog is not None and km.watchdog.reason:    # the kernel died because the watchdog killed it
                raise ResourceLimitError(f"the grader stopped this notebook: {km.watchdog.reason}") from None
            raise
        finally:
            shutil.rmtree(self._box, ignore_errors=True)

    def preprocess_cell(self, cell: NotebookNode, resources: dict[str, Any],
                        index: int) -> tuple[NotebookNode, dict[str, Any]]:
        cell, resources = super().preprocess_cell(cell, resources, index)
        grade_id = nbgrader_id(cell)
        verdict = self._verdicts.result().get(grade_id) if grade_id is not None else None
        if verdict is not None and verdict.probe is not None:
            resources["referee"]["records"][grade_id] = self._probe(verdict, resources)
        return cell, resources

    def _probe(self, verdict: Verdict, resources: dict[str, Any]) -> object:
        record_path = self._box / f"probe-{secrets.token_hex(8)}.pt"
        probe = NotebookNode(cell_type="code", source=probe_code(verdict, resources["referee"]["seed"],
                                                                    record_path),
                             metadata={}, outputs=[], execution_count=None)
        # nbclient stores an executed cell at its index: run the probe as a temporary last cell.
        self.nb.cells.append(probe)
        try:
            self.execute_cell(probe, len(self.nb.cells) - 1, store_history=False)
        finally:
            self.nb.cells.pop()
        return read_record(record_path)


# -------------------------------------------------------------------------------------------- the referee

def _text(value: object, limit: int = TEXT_LIMIT) -> str:
    value = "".join(value) if isinstance(value, list) else str(value)
    return value if len(value) <= limit else value[:limit] + f"\n... [{len(value) - limit} characters cut]"


def sanitize_output(output: Any) -> NotebookNode | None:
    """One output with nothing a browser would run and bounded size; None to drop it.

    `output`: one of a cell's outputs as the student's notebook holds it (a NotebookNode whose values can be
    anything).
    """
    kind = output.get("output_type")
    if kind == "stream":
        name = output.get("name") if output.get("name") in ("stdout", "stderr") else "stdout"
        return NotebookNode(output_type="stream", name=name, text=_text(output.get("text", "")))
    if kind == "error":
        traceback = output.get("traceback") if isinstance(output.get("traceback"), list) else []
        return NotebookNode(output_type="error", ename=_text(output.get("ename", ""), 200),
                            evalue=_text(output.get("evalue", ""), 2000),
                            traceback=[_text(line, 2000) for line in traceback[:50]])
    if kind in ("display_data", "execute_result"):
        data = output.get("data") if isinstance(output.get("data"), dict) else {}
        kept: dict[str, str] = {}
        for mime in SAFE_MIME:
            value = data.get(mime)
            if isinstance(value, list):
                value = "".join(map(str, value))
            if not isinstance(value, str):
                continue
            if mime == "text/plain":
                kept[mime] = _text(value)
            elif len(value) <= IMAGE_LIMIT and set(value) <= BASE64:
                kept[mime] = value
        dropped = sorted(set(data) - set(kept))
        if dropped and "text/plain" not in kept:
            kept["text/plain"] = f"[output of type {', '.join(dropped)[:200]} removed by the grader]"
        if not kept:
            return None
        node = NotebookNode(output_type=kind, data=kept, metadata={})
        if kind == "execute_result":
            node["execution_count"] = output.get("execution_count") if isinstance(
                output.get("execution_count"), int) else None
        return node
    return None


# What a markdown cell may show once rendered: text, structure, links and images on the web, nothing that runs.
MARKDOWN_TAGS = {"p", "br", "hr", "em", "strong", "b", "i", "code", "pre", "blockquote", "ul", "ol", "li",
                 "h1", "h2", "h3", "h4", "h5", "h6", "a", "img", "table", "thead", "tbody", "tr", "th", "td",
                 "del", "sup", "sub", "span", "div"}
MARKDOWN_ATTRIBUTES = {"a": ["href", "title"], "img": ["src", "alt", "title"], "th": ["align"], "td": ["align"]}
MARKDOWN_PROTOCOLS = ["http", "https", "mailto"]


def sanitize_markdown(source: str) -> str:
    """A markdown cell's source as HTML with nothing a browser would run: rendered the way nbconvert renders it
    (math left for MathJax), then cleaned with an allow-list (bleach): no script, iframe, event handler or
    javascript: link, whether written as HTML or as markdown."""
    import bleach
    from nbconvert.filters.markdown_mistune import markdown2html_mistune
    html = markdown2html_mistune(source)
    return bleach.clean(html, tags=MARKDOWN_TAGS, attributes=MARKDOWN_ATTRIBUTES, protocols=MARKDOWN_PROTOCOLS,
                        strip=True, strip_comments=True)


class SanitizeMarkdown(NbGraderPreprocessor):
    """Every markdown cell of a graded notebook becomes its sanitised HTML: the feedback page and formgrader,
    where TAs read written answers on their Jupyter server's origin, render the autograded notebook, and
    neither cleans markdown (formgrader's template ignores nbconvert's sanitize_html)."""

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict[str, Any]]:
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = sanitize_markdown(cell.source)
                cell.pop("attachments", None)
        return nb, resources


def _own_verdict(outputs: Iterable[NotebookNode]) -> tuple[bool, str]:
    """(passed, text): what the notebook's own test in this cell gave: failed when it raised. (Not when it wrote
    to stderr: a student's process writes there at will, and a line there switched the tampering flag off.)"""
    failed = any(o.output_type == "error" for o in outputs)
    lines: list[str] = []
    for o in outputs:
        if o.output_type == "stream":
            lines.append(o.text)
        elif o.output_type == "error":
            lines.append(f"{o.ename}: {o.evalue}\n")
    return not failed, "".join(lines)


class Referee(NbGraderPreprocessor):
    """Decides each auto-graded cell outside the student's process; sanitises every output."""

    report = Unicode("", help="JSON file to record, per notebook, the cells whose verdicts disagree "
                              "and the grade cells without a referee verdict").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict[str, Any]]:
        from autograde.checks.common import VisibleCheckFailed
        assignment, notebook = resources["nbgrader"]["assignment"], resources["nbgrader"]["notebook"]
        table = verdicts(assignment)
        referee = resources.get("referee", {})
        records, seed = referee.get("records", {}), referee.get("seed")
        artifacts = Path(resources["metadata"]["path"]) / "artifacts"     # nbgrader's copy: never in the sandbox
        found: dict[str, list[str | None]] = {"disagree": [], "unrefereed": []}
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            cell.outputs = [o for o in map(sanitize_output, cell.get("outputs", [])) if o is not None]
            grade_id = nbgrader_id(cell)
            if not cell.metadata.get("nbgrader", {}).get("grade"):
                continue
            verdict = table.get(grade_id) if grade_id is not None else None
            if verdict is None:
                found["unrefereed"].append(grade_id)      # nbgrader scores the notebook's own outputs
                continue
            own_passed, own_text = _own_verdict(cell.outputs)
            failure = verdict.decide(records.get(grade_id, {"error": "no probe ran"}), seed, artifacts)
            cell.outputs = []
            if own_text:
                cell.outputs.append(NotebookNode(output_type="stream", name="stdout",
                                                 text="Your notebook's own checks in this cell printed:\n"
                                                      + own_text))
            if failure is None:
                cell.outputs.append(NotebookNode(output_type="stream", name="stdout",
                                                 text="The grader's checks of this cell passed.\n"))
                continue
            message = _text(str(failure), 4000)
            cell.outputs.append(NotebookNode(output_type="error", ename="AssertionError", evalue=message,
                                             traceback=["The grader's check of this cell failed:", message]))
            if own_passed and isinstance(failure, VisibleCheckFailed):
                found["disagree"].append(grade_id)
        if self.report:
            path = Path(self.report)
            report = json.loads(path.read_text()) if path.is_file() else {}
            report[notebook] = found
            path.write_text(json.dumps(report, indent=1))
        return nb, resources
