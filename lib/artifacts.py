"""Which notebook writes which file under `artifacts/`: the checkpoints and histories the grader loads.

    NOTEBOOKS["slimming"]          ("sparsity_train", "vggprune", "train_prune_model"), in the order to run them
    made_by("slimming")            {"artifacts/sparsity_s0.pt": "sparsity_train", ..., "artifacts/finetuned_90.json": ...}
    missing("kd", Path("labs/kd")) ["artifacts/teacher.pt (written by kd.ipynb)", ...]

The names follow the active profile's table (lib.profile): its lambda tags, pruning percents and KD grid.
Plots (.png) are left out: they are for you to look at, the grader does not read them.
"""
from pathlib import Path

# Notebooks of each assignment, in the order a student runs them (later ones read earlier ones' artifacts).
NOTEBOOKS = {
    "slimming": ("sparsity_train", "vggprune", "train_prune_model"),
    "sincnet_quant": ("sincnet_quant",),
    "kd": ("kd",),
}


def _run(name):
    """A training run saved by lib.train.fit: its best checkpoint and its history."""
    return [f"artifacts/{name}.pt", f"artifacts/{name}.json"]


def _by_notebook(assignment, table):
    """{notebook: [artifact paths]} of one assignment, from the profile's `table`."""
    if assignment == "slimming":
        slim = table["slimming"]
        percents = [round(p * 100) for p in slim["percents"]]
        return {
            "sparsity_train": [f for tag in slim["lambdas"]
                               for f in _run(f"sparsity_{tag}") + [f"artifacts/sparsity_{tag}_last.pt"]],
            "vggprune": [f"artifacts/pruned_{p}.pt" for p in percents],
            "train_prune_model": [f for p in percents for f in _run(f"finetuned_{p}")],
        }
    if assignment == "sincnet_quant":
        return {"sincnet_quant": [f for run in ("float", "pruned", "quant") for f in _run(f"sincnet_{run}")]}
    if assignment == "kd":
        kd = table["kd"]
        sweep = kd["sweep"]
        same_budget = sweep["epochs"] == kd["student"]["epochs"]   # then the sweep reuses the two runs above
        runs = ["teacher", "student_scratch", "student_kd"]
        runs += [f"sweep/T{T}_alpha{alpha}" for T in sweep["T"] for alpha in sweep["alpha"]
                 if not (same_budget and (T, alpha) == (kd["T"], kd["alpha"]))]
        runs += [] if same_budget else ["sweep/scratch"]
        return {"kd": ["artifacts/student_cfg.json"] + [f for run in runs for f in _run(run)]}
    raise KeyError(f"no assignment {assignment!r}: expected one of {', '.join(NOTEBOOKS)}")


def made_by(assignment, profile_name=None):
    """{artifact path relative to the assignment folder: the notebook (no .ipynb) that writes it}."""
    from . import profile      # imported here: it imports torch, which nbgrader's config (via lib.submit) need not
    table = profile.TABLES[profile_name or profile.name()]
    return {path: notebook for notebook, paths in _by_notebook(assignment, table).items() for path in paths}


def missing(assignment, folder, profile_name=None):
    """The artifacts the grader needs that `folder` lacks, each with the notebook to run, as sentences."""
    return [f"{path} (written by {notebook}.ipynb)"
            for path, notebook in made_by(assignment, profile_name).items() if not (Path(folder) / path).is_file()]
