"""Does the KD lesson hold for any honest teacher? The quick profile's student pairs, for several teachers.

    .venv/bin/python bench/bench_kd_teachers.py TEACHER.pt [TEACHER.pt ...] [--seeds 5] [--set KEY=VALUE ...]

Every student of a course distils from its own teacher: the lambda = 0 VGG-19 of its own slimming run, which
differs from the reference's (rounding differs with the number of torch threads, and a few digits decide the
best epoch). So the kd notebook's setting is chosen for the gain it gives with every teacher, not one.

For each seed the scratch student is trained once; for each teacher (a VGG checkpoint, e.g. a slimming build's
artifacts/sparsity_s0.pt) the KD student of the same seed (same initial weights, same batches). The loop is the
notebook's: lib.train.fit with the reference kd_loss and CachedTeacher. Prints, per teacher, the KD - scratch
gain paired by seed on validation (what the notebook's test reads) and on test (what the grader reads), mean ±
std and the worst seed, and the integrity check's KL ratio (KD student / scratch student of the same seed).

--set overrides the profile's student setup or T / alpha, e.g. --set train_fraction=0.2 --set epochs=30.
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from autograde.checks.kd_runs import _batches, _kl, _logits  # noqa: E402
from autograde.reference.kd import kd_loss  # noqa: E402
from lib import profile  # noqa: E402
from lib.checkpoint import load_model  # noqa: E402
from lib.data import images  # noqa: E402
from lib.models import VGG  # noqa: E402
from lib.teacher import CachedTeacher  # noqa: E402
from lib.train import cross_entropy_step, distillation_step, evaluate, fit, seed_everything  # noqa: E402

CPU = torch.device("cpu")


def train_student(config, hp, seed, step):
    """The notebook's train_student without saving: (model in eval mode, best validation accuracy)."""
    seed_everything(seed)
    model = VGG(config["student_cfg"])
    loaders = images.loaders(batch_size=hp["batch_size"], seed=seed, train_fraction=hp["train_fraction"])
    history = fit(model, loaders, dict(hp, seed=seed), step=step, seed=seed, device=CPU, progress=False)
    return model.eval(), history.best["val_accuracy"]


def summary(values):
    values = torch.tensor(values)
    return f"{values.mean():+6.1f} ± {values.std():4.1f} (worst {values.min():+5.1f})"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("teachers", nargs="+", type=Path)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    config = profile.config("kd", "quick")
    overrides = {key: json.loads(value) for key, value in (item.split("=", 1) for item in args.set)}
    T, alpha = overrides.pop("T", config["T"]), overrides.pop("alpha", config["alpha"])
    hp = dict(config["student"], **overrides)
    splits = _batches()            # {"val", "test"}: lists of batches, as the kd checks read them
    test = splits["test"]
    print(f"students: {hp}, T = {T}, alpha = {alpha}, seeds 0-{args.seeds - 1}; "
          f"{torch.get_num_threads()} torch threads")

    start = time.time()
    scratch = [train_student(config, hp, seed, cross_entropy_step) for seed in range(args.seeds)]
    scratch_test = [evaluate(model, test, device=CPU, progress=False)[1] for model, _ in scratch]
    print(f"scratch: validation {[round(v, 1) for _, v in scratch]}, test {[round(v, 1) for v in scratch_test]}")
    for path in args.teachers:
        teacher = load_model(path, VGG)[0].eval()
        teacher_val = evaluate(teacher, splits["val"], device=CPU, progress=False)[1]
        distiller = CachedTeacher(teacher)
        step = distillation_step(distiller, kd_loss, T, alpha)
        teacher_logits = _logits(teacher, test)[0]
        val_gain, test_gain, kd_test, ratios = [], [], [], []
        for seed, (scratch_model, scratch_val) in enumerate(scratch):
            model, val = train_student(config, hp, seed, step)
            kd_test.append(evaluate(model, test, device=CPU, progress=False)[1])
            val_gain.append(val - scratch_val)
            test_gain.append(kd_test[-1] - scratch_test[seed])
            ratios.append(float(_kl(teacher_logits, _logits(model, test)[0], T)
                                / _kl(teacher_logits, _logits(scratch_model, test)[0], T)))
        print(f"teacher {path} ({teacher_val:.2f}% validation)\n"
              f"  KD test {[round(v, 1) for v in kd_test]}\n"
              f"  KD - scratch  validation {summary(val_gain)}   test {summary(test_gain)}\n"
              f"  KL ratio KD / scratch {min(ratios):.2f}-{max(ratios):.2f}")
    print(f"{time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
