"""Every number an answer key quotes is one the executed reference work shows.

The TAs grade the written answers with the keys of solutions/, so a key that quotes another run misleads every
grade. Each claim below reads numbers out of a key with a pattern and holds them to the reference build that the
suite executes (`reference_work`): a single number within a tolerance, a range ("86.4-86.6%", quoted where runs on
other CPUs or seeds give other numbers) around the build's value. Then no result-like number (a percentage or a
decimal) may be left in a key that no claim reads, so a new number cannot go in unchecked.
"""
import re
import sys

import nbformat
import pytest

from autograde.course import SOLUTIONS, nbgrader_id
from lib import profile
from lib.artifacts import kd_sweep_runs
from lib.checkpoint import load_model
from lib.models import VGG
from lib.models.quant import CLIP_STDS
from lib.slimming import gammas, sparsity
from lib.train import History

KEYS = {"slimming": {"sparsity_train": ["answer_regimes", "answer_why"],
                     "vggprune": ["answer_pruning", "answer_accuracy", "answer_absorb"],
                     "train_prune_model": ["answer_results", "answer_compare"]},
        "sincnet_quant": {"sincnet_quant": ["answer_quantization", "answer_ptq_qat", "answer_range",
                                            "answer_comparison"]},
        "kd": {"kd": ["answer_transfer", "answer_combine"]}}
# Numbers in keys that are settings or sizes, not results: the pruning ratios, a parameter, CLIP_STDS' rounding.
NOT_RESULTS = r"(?<![\d.])(30|50|70|90)%|alpha = 0\.[59]|s = 0\.\d+|initial 0\.5|around 0\.5"


# ---------------------------------------------------------------------------- what the reference printed

def printed(work, notebook, cell):
    """The text a cell of the executed notebook printed."""
    nb = nbformat.read(work / f"{notebook}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if nbgrader_id(c) == cell)
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def table(text):
    """{first cell: [the other cells, numbers as floats]} of the `|`-separated rows of `text` (headers aside)."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("|")]
        numbers = [re.fullmatch(r"-?[\d,.]+%?", c) for c in cells[1:]]
        if len(cells) > 1 and any(numbers):      # a header has none
            rows[cells[0]] = [float(c.rstrip("%").replace(",", "")) if n else c for c, n in zip(cells[1:], numbers)]
    return rows


def records(work, name):
    return History.load(work / "artifacts" / f"{name}.json").records


def best_val(work, name):
    return History.load(work / "artifacts" / f"{name}.json").best["val_accuracy"]


def near(quoted, value, tolerance, what):
    assert abs(float(quoted) - value) <= tolerance, f"{what}: the key says {quoted}, the reference shows {value:.4g}"


def inside(low, high, value, what):
    assert float(low) <= value <= float(high), (
        f"{what}: the key says {low}-{high}, the reference shows {value:.4g}")


# ------------------------------------------------------------------------------------------ the claims

def _tradeoff(work):
    """{s: [best epoch, sparsity, validation accuracy]} of sparsity_train's lambda sweep."""
    return {float(s): values for s, values in table(printed(work, "sparsity_train", "lambda_sweep")).items()}


def _steepest_epoch(work, name):
    """The epoch of a run's largest increase of sparsity over the epoch before."""
    sparsities = [0.0] + [r["sparsity"] for r in records(work, name)]
    steps = [b - a for a, b in zip(sparsities, sparsities[1:])]
    return steps.index(max(steps)) + 1


def _histogram(work, tag):
    g = gammas(load_model(work / "artifacts" / f"sparsity_{tag}.pt", VGG)[0]).sort().values
    silenced = g[g < profile.config("sparsity_threshold")]
    return dict(smallest=g[0].item(), line50=g[int(len(g) * 0.5)].item(), line90=g[int(len(g) * 0.9)].item(),
                below=len(silenced), silenced_median_log10=silenced.median().log10().item() if len(silenced) else 0)


def _floor(work):
    """{percent: (layers at the floor, channels of the last layer, % actually pruned)} from vggprune's tables."""
    text, floor = printed(work, "vggprune", "tables"), {}
    for part in text.split("\npruning ")[1:]:
        percent = int(part.split("%")[0])
        line = re.search(r"actually pruned: ([\d.]+)% of the \d+ channels; (\d+) of the 16 layers", part)
        kept = [int(row.split("|")[2]) for row in part.splitlines() if re.match(r"\s+\d+ \|", row)]
        floor[percent] = (int(line[2]), kept, float(line[1]))
    return floor


def _control(work):
    return {int(k.rstrip("%")): v for k, v in table(printed(work, "vggprune", "control")).items()}


def _absorb(work):
    """{percent: [plain, constants absorbed, beta kept]} of vggprune's absorb_table."""
    return {int(k.rstrip("%")): v for k, v in table(printed(work, "vggprune", "absorb_table")).items()}


def _finetune_table(work):
    return table(printed(work, "train_prune_model", "table"))


def _more_controls(work):
    """train_prune_model's second controls: the fine-tuned sparse and baseline networks (50%, 90%) and the 90% cfg
    from scratch at the whole budget (each seed, and their mean)."""
    rows = table(printed(work, "train_prune_model", "more_controls"))
    accuracy = {name: values[-1] for name, values in rows.items()}
    return dict(sparse=[accuracy[f"pruned {p}%, sparse (lambda > 0), fine-tuned"] for p in (50, 90)],
                baseline=[accuracy[f"pruned {p}%, baseline (lambda = 0), fine-tuned"] for p in (50, 90)],
                **{"scratch seeds": [v for k, v in accuracy.items() if "scratch, seed" in k],
                                       "scratch mean": accuracy["90% cfg from scratch, mean over the seeds"]})


def _seed_table(work):
    """{row: (mean, std)} and {row: per-seed values} of kd's seed table."""
    rows = {}
    for line in printed(work, "kd", "seed_table").splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 2 and re.fullmatch(r"[\d.-]+ ± [\d.]+", cells[-1]):
            mean, std = (float(x) for x in cells[-1].split("±"))
            rows[cells[0]] = (mean, std, [float(c) for c in cells[1:-1]])
    return rows


def _heat_map(work):
    """Each cell of kd's sweep map: best validation accuracy minus the scratch student's (seed 0)."""
    runs = kd_sweep_runs(profile.config("kd"))
    scratch = next(name for name, T, _ in runs if T is None)
    return [best_val(work, name) - best_val(work, scratch) for name, T, _ in runs if T is not None]


def _sweep(work):
    text = printed(work, "sincnet_quant", "ptq_sweep")
    float_val = float(re.search(r"pruned model: ([\d.]+)% in float", text)[1])
    rows = {int(m[1]): (float(m[2]), float(m[3])) for m in re.finditer(r"^(\d)\s+([\d.]+)%\s+([\d.]+)%", text, re.M)}
    return float_val, rows


def _levels(work):
    """{range name: (clipped %, mean squared error, [share % per level])} of the weight_levels cell."""
    lines = {}
    for m in re.finditer(r"^(max\|w\||clipped at [\d.]+ std)\s+r = [\d.]+, clipped weights\s+([\d.]+)%, mean squared "
                         r"error ([\d.e+-]+), share per level (.*)$", printed(work, "sincnet_quant", "weight_levels"), re.M):
        lines["max" if m[1] == "max|w|" else "clipped"] = (float(m[2]), float(m[3]),
                                                            [float(s.rstrip("%")) for s in m[4].split()])
    return lines


def _compare(work):
    """{model: (parameters, bytes, test accuracy)} of sincnet_quant's comparison table."""
    return {m[1]: (int(m[2].replace(",", "")), int(m[3].replace(",", "")), float(m[4]))
            for m in re.finditer(r"^(float|pruned \+ fine-tuned|pruned \+ QAT|post-training quantized)\s+\[[^]]*\]\s+"
                                 r"([\d,]+)\s+([\d,]+)\s+[\d.]+x\s+([\d.]+)%", printed(work, "sincnet_quant", "compare"), re.M)}


def _two_bit_weights(work):
    """How many weights the quantized SincNet holds at 2 bits (the ptq cell's table)."""
    return sum(int(m[1]) for m in re.finditer(r"^Quant\w+\s+(\d+)\s+2$", printed(work, "sincnet_quant", "ptq"), re.M))


def _printed_number(work, notebook, cell, pattern):
    return float(re.search(pattern, printed(work, notebook, cell))[1])


SWEEP = [   # sincnet_quant's PTQ sweep, read in two keys
    (r"lose under (\d+) points", lambda w, q: inside(
        -1, q, _sweep(w)[0] - min(_sweep(w)[1][8]), "8-bit loss")),
    (r"At 4\s+bits the weights lose (\d+)-(\d+) points and at 3 bits (\d+)-(\d+)", lambda w, a, b, c, d: [
        inside(lo, hi, _sweep(w)[0] - accuracy, f"{bits}-bit loss")
        for bits, lo, hi in ((4, a, b), (3, c, d)) for accuracy in _sweep(w)[1][bits]]),
]

CLAIMS = {
    # sparsity_train (work: the slimming reference)
    "answer_regimes": [
        (r"stays at sparsity 0 and ends at (\d+)-(\d+)% training", lambda w, lo, hi: inside(
            lo, hi, records(w, "sparsity_s0")[-1]["train_accuracy"], "baseline's last training accuracy")),
        (r"climbs fastest while the learning rate is high", lambda w: inside(1, 6, _steepest_epoch(w, "sparsity_s1"),
                                                                             "epoch of the largest sparsity step")),
        (r"it ends at ([\d.]+)-([\d.]+) \(by build", lambda w, lo, hi: inside(
            lo, hi, records(w, "sparsity_s1")[-1]["sparsity"], "moderate run's last sparsity")),
        (r"Its training accuracy ends a few points under", lambda w: inside(0, 8, records(w, "sparsity_s0")[-1][
            "train_accuracy"] - records(w, "sparsity_s1")[-1]["train_accuracy"], "baseline - moderate, training")),
        (r"sparsity reaches (\d) within a few epochs", lambda w, q: inside(1, 6, next(
            r["epoch"] for r in records(w, "sparsity_s2") if r["sparsity"] >= float(q) - 0.01), "epoch of sparsity 1")),
        (r"\(under (\d+)%\)", lambda w, q: inside(
            0, q, max(r["train_accuracy"] for r in records(w, "sparsity_s2")), "large run's best training accuracy")),
        (r"strength \(s = ([\d.]+)\) the validation accuracy stays within a few points", lambda w, s: inside(
            -5, 5, _tradeoff(w)[0.0][2] - _tradeoff(w)[float(s)][2], "baseline - moderate, validation")),
        (r"at s = ([\d.]+) it is more than (\d+) points lower", lambda w, s, q: inside(
            q, 100, _tradeoff(w)[0.0][2] - _tradeoff(w)[float(s)][2], f"baseline - s = {s}, validation")),
        (r"at s = ([\d.]+)\s+the network is at chance", lambda w, s: inside(
            0, 15, _tradeoff(w)[float(s)][2], f"validation accuracy at s = {s}")),
    ],
    "answer_why": [
        (r"smallest\s+\$\|\\gamma\|\$ ([\d.]+)-([\d.]+)", lambda w, lo, hi: inside(
            lo, hi, _histogram(w, "s0")["smallest"], "baseline's smallest |gamma|")),
        (r"the 50% and 90% lines both fall inside the bump", lambda w: inside(
            0.2, 2, _histogram(w, "s0")["line50"], "baseline's 50% line")),
        (r"two\s+groups: (\d+)-(\d+) of its 1376", lambda w, lo, hi: inside(
            lo, hi, _histogram(w, "s1")["below"], "silenced channels")),
        (r"\(its sparsity, ([\d.]+)-([\d.]+)\)", lambda w, lo, hi: inside(lo, hi, sparsity(
            load_model(w / "artifacts" / "sparsity_s1.pt", VGG)[0], profile.config("sparsity_threshold")), "sparsity")),
        (r"most of them around\s+1e-(\d+),", lambda w, q: near(
            -float(q), _histogram(w, "s1")["silenced_median_log10"], 1.5, "log10 of the silenced channels' median")),
        (r"the bulk between about ([\d.]+) and 1,", lambda w, q: near(q, profile.config("sparsity_threshold"), 0,
                                                                     "the sparsity threshold")),
        (r"The 50% line\s+lies above the silenced group", lambda w: inside(
            profile.config("sparsity_threshold"), 1, _histogram(w, "s1")["line50"], "sparse 50% line")),
        (r"the 90% line lies inside the bulk", lambda w: inside(0.05, 2, _histogram(w, "s1")["line90"],
                                                                "sparse 90% line")),
    ],
    # vggprune
    "answer_pruning": [
        (r"At 90%, (\d+) to (\d+) of the 16", lambda w, lo, hi: inside(lo, hi, _floor(w)[90][0], "layers at the floor")),
        (r"layers (\d+) to (\d+) in every build", lambda w, a, b: inside(8, 8, max(
            _floor(w)[90][1][int(a):int(b) + 1]), f"widest of layers {a}-{b} at 90%")),
        (r"\((\d+) to (\d+) of 128", lambda w, lo, hi: inside(lo, hi, _floor(w)[90][1][15], "last layer's width")),
        (r"At 50%, at most (\d) layers", lambda w, q: inside(0, q, _floor(w)[50][0], "layers at the floor at 50%")),
        (r"says ([\d.]+)-([\d.]+)% of the 1376", lambda w, lo, hi: inside(lo, hi, _floor(w)[90][2], "pruned at 90%")),
    ],
    "answer_accuracy": [
        (r"\((\d+)-(\d+)% unpruned", lambda w, lo, hi: inside(lo, hi, _control(w)[0][0], "sparse model unpruned")),
        (r"keeps most of its accuracy at 30% \(it loses a few points at most\)", lambda w: inside(
            -2, 6, _control(w)[0][0] - _control(w)[30][0], "sparse model's loss at 30%")),
        (r"loses (\d+)-(\d+) points at 50%", lambda w, lo, hi: inside(
            lo, hi, _control(w)[0][0] - _control(w)[50][0], "sparse model's loss at 50%")),
        (r"at\s+chance \((\d+)%\) at 70% and\s+90%", lambda w, q: (
            near(q, _control(w)[70][0], 5, "sparse at 70%"), near(q, _control(w)[90][0], 5, "sparse at 90%"))),
        (r"baseline is at chance already at 30%", lambda w: near(10, _control(w)[30][2], 5, "baseline at 30%")),
        (r"share of the channels \(([\d.]+)-([\d.]+)\)", lambda w, lo, hi: inside(lo, hi, sparsity(
            load_model(w / "artifacts" / "sparsity_s1.pt", VGG)[0], profile.config("sparsity_threshold")), "sparsity")),
        (r"stays within a few points of its unpruned accuracy", lambda w: inside(
            -2, 6, _control(w)[0][1] - _control(w)[50][1], "what the small gammas cost at 50%")),
        (r"most of the\s+loss comes from the constants", lambda w: inside(
            2 * max(_control(w)[0][1] - _control(w)[50][1], 0.5), 100, _control(w)[50][1] - _control(w)[50][0],
            "what dropping beta costs at 50%, against twice what the small gammas cost")),
    ],
    "answer_absorb": [
        (r"recovers most of what dropping them cost at 50%", lambda w: inside(
            (_absorb(w)[50][2] - _absorb(w)[50][0]) / 2, 100, _absorb(w)[50][1] - _absorb(w)[50][0],
            "what absorbing recovers at 50%, against half of what dropping the constants costs")),
        (r"stays a few points under \"beta kept\"", lambda w: inside(
            0, 8, _absorb(w)[50][2] - _absorb(w)[50][1], "beta kept - absorbed at 50%")),
        (r"at chance with and without", lambda w: (near(10, _absorb(w)[70][0], 5, "plain at 70%"),
                                                  near(10, _absorb(w)[70][1], 5, "absorbed at 70%"))),
    ],
    # train_prune_model
    "answer_results": [
        (r"reaches ([\d.]+)% and the 50%-pruned network ([\d.]+)%", lambda w, a, b: (
            near(a, _finetune_table(w)["unpruned"][-1], 2.5, "unpruned, trained on"),
            near(b, _finetune_table(w)["pruned 50%"][-1], 2.5, "50% fine-tuned"))),
        (r"with ([\d.]+)% of the\s+parameters and ([\d.]+)% of the FLOPs", lambda w, a, b: (
            near(a, _finetune_table(w)["pruned 50%"][1], 1, "50% parameters %"),
            near(b, _finetune_table(w)["pruned 50%"][3], 1, "50% FLOPs %"))),
        (r"network reaches ([\d.]+)%, ([\d.]+) points below", lambda w, a, b: (
            near(a, _finetune_table(w)["pruned 90%"][-1], 2.5, "90% fine-tuned"),
            near(b, _finetune_table(w)["unpruned"][-1] - _finetune_table(w)["pruned 90%"][-1], 2.5, "90% gap"))),
        (r"parameters fall to ([\d.]+)% but the FLOPs only to ([\d.]+)%", lambda w, a, b: (
            near(a, _finetune_table(w)["pruned 90%"][1], 0.2, "90% parameters %"),
            near(b, _finetune_table(w)["pruned 90%"][3], 0.3, "90% FLOPs %"))),
        (r"a factor (\d+) against (\d+)", lambda w, a, b: (
            near(a, 100 / _finetune_table(w)["pruned 90%"][1], 8, "parameter factor"),
            near(b, 100 / _finetune_table(w)["pruned 90%"][3], 1.5, "FLOP factor"))),
        (r"runs (\d+)-(\d+) times faster for one image and (\d+)-(\d+) times", lambda w, a, b, c, d: (
            inside(a, b, _finetune_table(w)["unpruned"][4] / _finetune_table(w)["pruned 90%"][4], "speed-up, 1"),
            inside(c, d, _finetune_table(w)["unpruned"][5] / _finetune_table(w)["pruned 90%"][5], "speed-up, 64"))),
    ],
    "answer_compare": [
        (r"copied weights reaches ([\d.]+)%, the same cfg from random weights (\d+)-(\d+)%", lambda w, q, lo, hi: (
            near(q, _finetune_table(w)["pruned 90%"][-1], 2.5, "90% fine-tuned"),
            inside(lo, hi, _finetune_table(w)["90%, scratch"][-1], "90% cfg from scratch, 15 epochs"))),
        (r"reaches (\d+)-(\d+)% on average over two seeds, within a few points of the fine-tuned", lambda w, lo, hi: (
            inside(lo, hi, _more_controls(w)["scratch mean"], "90% cfg from scratch, whole budget"),
            inside(-8, 8, _finetune_table(w)["pruned 90%"][-1] - _more_controls(w)["scratch mean"],
                   "fine-tuned 90% - scratch at the whole budget"))),
        (r"far closer than the unfair control", lambda w: inside(
            0, 100, (_more_controls(w)["scratch mean"] - _finetune_table(w)["90%, scratch"][-1]),
            "scratch at the whole budget - scratch at the fine-tuning's")),
        (r"baseline pruned and fine-tuned ends within a few points of the sparse model", lambda w: [
            inside(-4, 4, b - a, f"baseline - sparse, fine-tuned at {p}%") for p, a, b in zip(
                (50, 90), _more_controls(w)["sparse"], _more_controls(w)["baseline"])]),
    ],
    # kd
    "answer_transfer": [
        (r'The prediction to make was "less"', lambda w: inside(
            _seed_table(w)["KD"][1], 100, _seed_table(w)["scratch"][1], "scratch's seed std, against KD's")),
        (r"gains\s+\+(\d+) to \+(\d+) points", lambda w, lo, hi: inside(lo, hi, _seed_table(w)["KD - scratch"][0],
                                                                         "mean gain")),
        (r"scratch (\d+)-(\d+)%, KD (\d+)-(\d+)% on average", lambda w, a, b, c, d: (
            inside(a, b, _seed_table(w)["scratch"][0], "scratch mean"), inside(c, d, _seed_table(w)["KD"][0], "KD mean"))),
        (r"deviation of\s+about (\d+) points", lambda w, q: near(q, _seed_table(w)["KD - scratch"][1], 1.5, "gain std")),
        (r"seed by ([\d.]+)-([\d.]+) points, the distilled one's by\s+([\d.]+)-([\d.]+)", lambda w, a, b, c, d: (
            inside(a, b, _seed_table(w)["scratch"][1], "scratch std"), inside(c, d, _seed_table(w)["KD"][1], "KD std"))),
        (r"positive for every seed and ([\d.]+) to ([\d.]+) of its", lambda w, lo, hi: (
            inside(0.01, 100, min(_seed_table(w)["KD - scratch"][2]), "smallest gain of a seed"),
            inside(lo, hi, _seed_table(w)["KD - scratch"][0] / _seed_table(w)["KD - scratch"][1], "gain / its std"))),
        (r"the smallest (\d+) to \+(\d+) points, the\s+largest \+(\d+) to \+(\d+)\)", lambda w, a, b, c, d: (
            inside(a, b, min(_heat_map(w)), "smallest cell"), inside(c, d, max(_heat_map(w)), "largest cell"))),
        (r"seed std of about (\d+) points", lambda w, q: near(q, _seed_table(w)["KD - scratch"][1], 1.5, "gain std")),
    ],
    "answer_combine": [
        (r"\(([\d,]+) to ([\d,]+) by build, against ([\d,]+)\)", lambda w, lo, hi, student: (
            inside(lo.replace(",", ""), hi.replace(",", ""), table(printed(w, "kd", "table"))[
                "pruned 90% + fine-tuned"][0], "pruned parameters"),
            near(student.replace(",", ""), table(printed(w, "kd", "table"))["student, KD"][0], 0,
                 "student parameters"))),
        (r"costs ([\d.]+)-([\d.]+) times their FLOPs", lambda w, lo, hi: inside(lo, hi, (
            lambda t: t["pruned 90% + fine-tuned"][2] / t["student, KD"][2])(table(printed(w, "kd", "table"))),
            "FLOP ratio")),
        (r"Its accuracy \((\d+)-(\d+)%\)", lambda w, lo, hi: inside(lo, hi, table(printed(w, "kd", "table"))[
            "pruned 90% + fine-tuned"][-1], "pruned accuracy")),
    ],
    # sincnet_quant
    "answer_quantization": [
        (r"about \$\\pm ([\d.]+)\$ standard deviations", lambda w, q: near(q, CLIP_STDS[2], 0.05, "CLIP_STDS[2]")),
        (r"Prediction: close to chance", lambda w: inside(0, 25, _compare(w)["post-training quantized"][2], "after PTQ")),
    ],
    "answer_ptq_qat": [*SWEEP,
        (r"from (\d+)-(\d+)% to (\d+)-(\d+)% test accuracy", lambda w, a, b, c, d: (
            inside(a, b, _printed_number(w, "sincnet_quant", "ptq", r"pruned float model ([\d.]+)%"), "pruned"),
            inside(c, d, _printed_number(w, "sincnet_quant", "ptq", r"quantization ([\d.]+)%"), "after PTQ"))),
        (r"training accuracy ends at (\d+)-(\d+)%", lambda w, lo, hi: inside(
            lo, hi, records(w, "sincnet_quant")[-1]["train_accuracy"], "QAT's last training accuracy")),
        (r"spread by a standard deviation of (\d+)-(\d+) points", lambda w, lo, hi: inside(lo, hi, _printed_number(
            w, "sincnet_quant", "qat_seeds", r"seeds: [\d.]+ ± ([\d.]+)%"), "QAT's seed std")),
        (r"back to (\d+)-(\d+)%", lambda w, lo, hi: inside(lo, hi, _printed_number(
            w, "sincnet_quant", "qat", r"test accuracy after QAT ([\d.]+)%"), "after QAT")),
    ],
    "answer_range": [*SWEEP,
        (r"puts (\d+)-([\d.]+)% of the weights on the two inner", lambda w, lo, hi: inside(
            lo, hi, sum(_levels(w)["max"][2][1:3]), "inner levels' share")),
        (r"no weight is clipped \(0-([\d.]+)%", lambda w, q: inside(0, q, _levels(w)["max"][0], "clipped at max|w|")),
        (r"Clipped at ([\d.]+) sigma", lambda w, q: near(q, CLIP_STDS[2], 0, "CLIP_STDS[2]")),
        (r"between about (\d+)%\s+and (\d+)% each", lambda w, lo, hi: (
            inside(lo, hi, min(_levels(w)["clipped"][2]), "smallest share"),
            inside(lo, hi, max(_levels(w)["clipped"][2]), "largest share"))),
        (r"(\d+)-(\d+)% of the weights are clipped", lambda w, lo, hi: inside(lo, hi, _levels(w)["clipped"][0],
                                                                               "clipped weights")),
        (r"error is (\d+)-(\d+) times smaller", lambda w, lo, hi: inside(
            lo, hi, _levels(w)["max"][1] / _levels(w)["clipped"][1], "error ratio")),
        (r"from -([\d.]+) to \+([\d.]+) points against", lambda w, lo, hi: [
            inside(-float(lo), hi, _sweep(w)[1][bits][1] - _sweep(w)[1][bits][0], f"{bits} bits: clipped - max|w|")
            for bits in (3, 4)]),
        (r"clipping wins, by (\d+)-(\d+) points", lambda w, lo, hi: inside(
            lo, hi, _sweep(w)[1][2][1] - _sweep(w)[1][2][0], "2 bits: clipped - max|w|")),
        (r"\(([\d.]+),\s+([\d.]+), ([\d.]+) sigma for Gaussian", lambda w, *k: near(
            0, max(abs(float(q) - CLIP_STDS[b]) for q, b in zip(k, (2, 3, 4))), 0, "CLIP_STDS")),
    ],
    "answer_comparison": [
        (r"by (\d) to (\d) \(by build\)", lambda w, lo, hi: inside(
            lo, hi, _compare(w)["float"][0] / _compare(w)["pruned + fine-tuned"][0], "float / pruned parameters")),
        (r"divide the bytes by (\d) to (\d) again", lambda w, lo, hi: inside(
            lo, hi, _compare(w)["pruned + fine-tuned"][1] / _compare(w)["pruned + QAT"][1], "pruned / QAT bytes")),
        (r"costs up to about ten points", lambda w: inside(
            0, 12, _compare(w)["float"][2] - _compare(w)["pruned + fine-tuned"][2], "what pruning costs")),
        (r"the 2-bit QAT costs more than pruning did", lambda w: inside(
            _compare(w)["float"][2] - _compare(w)["pruned + fine-tuned"][2], 100,
            _compare(w)["pruned + fine-tuned"][2] - _compare(w)["pruned + QAT"][2], "what QAT costs, against pruning")),
        (r"stays more than ten times smaller", lambda w: inside(10, 1000, _compare(w)["float"][1] / (
            _compare(w)["pruned + QAT"][1] + _two_bit_weights(w) / 4), "float / 4-bit bytes")),
        (r"4-bit post-training quantization losing far less than 2-bit", lambda w: inside(
            0, (_sweep(w)[0] - max(_sweep(w)[1][2])) / 2, _sweep(w)[0] - min(_sweep(w)[1][4]),
            "PTQ loss at 4 bits, against half the loss at 2 bits")),
    ],
}


def _key(notebook, key_id, assignment):
    path = SOLUTIONS / assignment / f"{notebook}.ipynb"
    cell = next(c for c in nbformat.read(path, as_version=4).cells if nbgrader_id(c) == key_id)
    return re.sub(r"\s+", " ", cell.source.replace("### BEGIN SOLUTION", "").replace("### END SOLUTION", ""))


def unbound_numbers(text, claims):
    """The percentages and decimals of `text` that no claim's pattern covers (settings of NOT_RESULTS aside)."""
    for pattern, _ in claims:
        text = re.sub(pattern.replace(r"\s+", " ").replace("\n", " "), " ", text)
    text = re.sub(NOT_RESULTS, " ", text)
    return re.findall(r"\d+\.\d+|\d+%", text)


@pytest.mark.parametrize("assignment", list(KEYS))
def test_every_number_of_a_key_is_what_the_reference_work_shows(assignment, reference_work):
    work = reference_work(assignment)
    for notebook, key_ids in KEYS[assignment].items():
        for key_id in key_ids:
            key = _key(notebook, key_id, assignment)
            for pattern, check in CLAIMS[key_id]:
                found = re.search(pattern.replace("\n", " "), key)
                assert found, f"{notebook}.ipynb {key_id}: the key no longer says {pattern!r}"
                check(work, *found.groups())
            assert not unbound_numbers(key, CLAIMS[key_id]), (
                f"{notebook}.ipynb {key_id}: numbers no claim of tests/test_answer_keys.py checks: "
                f"{unbound_numbers(key, CLAIMS[key_id])}")


def test_a_changed_number_or_a_new_one_fails(tmp_path, monkeypatch):
    """The check is not vacuous: QAT's range moved away from what the run printed fails, and so does a new
    figure that no claim reads."""
    key = _key("sincnet_quant", "answer_ptq_qat", "sincnet_quant")
    pattern, check = next(c for c in CLAIMS["answer_ptq_qat"] if "back to" in c[0])
    monkeypatch.setattr(sys.modules[__name__], "printed",
                        lambda work, notebook, cell: "test accuracy after QAT 65.00% (after PTQ 11.90%)")
    check(tmp_path, *re.search(pattern, key).groups())
    with pytest.raises(AssertionError, match="after QAT: the key says 75-80"):
        check(tmp_path, *re.search(pattern, re.sub(r"back to \d+-\d+%", "back to 75-80%", key)).groups())
    assert unbound_numbers(key, CLAIMS["answer_ptq_qat"]) == []
    assert unbound_numbers(key + " In float it reaches 86.9%.", CLAIMS["answer_ptq_qat"]) == ["86.9"]
