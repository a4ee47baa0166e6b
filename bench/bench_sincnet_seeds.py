"""Seed spread of the sincnet_quant pipeline (quick profile): how far the sinc filters move, and QAT accuracy.

    .venv/bin/python bench/bench_sincnet_seeds.py [--seeds 0 1 2] [--threads 1] [--pruned PRUNED.pt]

For each seed, the notebook's pipeline with the reference solutions: float SincNet (profile "sincnet"), prune
with build_cfg_mask, fine-tune, calibrate and quantize, QAT (profile "sincnet_quant"). It prints per seed:
- the sinc filters' mean relative cut-off change over the float training (lib.models.cutoff_change);
- float and pruned test accuracy of the kept checkpoints;
- QAT: the validation curve, and validation / test accuracy of the epoch each rule of lib.train.kept_record
  would keep ("best" validation, "last", "smoothed"); the profile's rule (qat["select"]) is the one the notebook uses.
With --pruned (e.g. the reference work's artifacts/sincnet_pruned.pt) only QAT runs, from that model: the
spread of QAT alone, in a fraction of the time. Then the mean and std over the seeds. Test accuracy is
recorded per epoch here only to compare the rules; the notebook never selects on it.
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from autograde.mutants.sincnet_quant import calibrate  # noqa: E402
from autograde.reference.sincnet_quant import STEQuantize, weight_scale  # noqa: E402
from autograde.reference.slimming import build_cfg_mask  # noqa: E402
from lib import profile, train  # noqa: E402
from lib.checkpoint import load_model  # noqa: E402
from lib.data import speech  # noqa: E402
from lib.models import SincNet, cutoff_change  # noqa: E402
from lib.models.quant import quantize_sincnet  # noqa: E402
from lib.slimming import prune_sincnet  # noqa: E402


RULES = ("best", "last", "smoothed")     # lib.train.kept_record's rules


def run(seed, loaders, pruned=None):
    """One pipeline with `seed` (only QAT when `pruned`, a fine-tuned SincNet, is given): a dict of figures."""
    test = lambda m: train.evaluate(m, loaders["test"], progress=False)[1]   # noqa: E731
    float_hp, settings = profile.config("sincnet"), profile.config("sincnet_quant")
    train.seed_everything(seed)
    found = {}
    if pruned is None:
        pruned, found = float_and_pruned(seed, loaders, float_hp, settings, test)
    qmodel = quantize_sincnet(pruned, STEQuantize.apply, weight_scale)
    calibrate(qmodel, loaders["train"], settings["calibration_batches"])
    history = train.fit(qmodel, loaders, settings["qat"], seed=seed, progress=False,
                        epoch_metrics={"test_accuracy": test})
    found.update(val_curve=history["val_accuracy"],
                 **{rule: train.kept_record(history.records, rule) for rule in RULES})
    return found


def float_and_pruned(seed, loaders, float_hp, settings, test):
    """(fine-tuned pruned SincNet, {cutoff_change, float, pruned}) of the notebook's Tasks 1 and 2."""
    model = SincNet(width=float_hp["width"])
    before = [b.detach().clone() for b in model.front[0].bands()]
    train.fit(model, loaders, float_hp, seed=seed, progress=False)
    found = dict(cutoff_change=cutoff_change(before, model.front[0].bands()), float=test(model))

    cfg, cfg_mask = build_cfg_mask(model, settings["pruning_rate"], settings["min_channels"])
    pruned = prune_sincnet(model, cfg, cfg_mask)
    train.fit(pruned, loaders, settings["finetune"], seed=seed, progress=False)
    found["pruned"] = test(pruned)
    return pruned, found


def spread(values):
    return f"{statistics.mean(values):6.2f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:5.2f}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--pruned", type=Path, help="run only QAT, from this pruned checkpoint")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    qat = profile.config("sincnet_quant")["qat"]
    print(f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.1f}; "
          f"sinc_lr {profile.config('sincnet').get('sinc_lr')}, QAT keeps the {qat.get('select', 'best')!r} epoch")
    loaders = speech.loaders()
    results = []
    for seed in args.seeds:
        start = time.time()
        pruned = load_model(args.pruned, SincNet)[0] if args.pruned else None
        r = run(seed, loaders, pruned)
        results.append(r)
        print(f"seed {seed} ({time.time() - start:.0f} s)" + ("" if pruned else
              f": cut-off change {r['cutoff_change']:.3f}, float {r['float']:.2f}%, pruned {r['pruned']:.2f}%"))
        print(f"  QAT validation per epoch: {' '.join(f'{v:.1f}' for v in r['val_curve'])}")
        for rule in RULES:
            record = r[rule]
            print(f"  QAT {rule:<4} epoch {record['epoch']}: validation {record['val_accuracy']:.2f}%, "
                  f"test {record['test_accuracy']:.2f}%")
    print(f"over seeds {args.seeds} (mean ± std):")
    if not args.pruned:
        print(f"  sinc cut-off change      {spread([100 * r['cutoff_change'] for r in results])} %")
        print(f"  float test               {spread([r['float'] for r in results])}")
        print(f"  pruned test              {spread([r['pruned'] for r in results])}")
    for rule in RULES:
        print(f"  QAT {rule:<4} validation      {spread([r[rule]['val_accuracy'] for r in results])}")
        print(f"  QAT {rule:<4} test            {spread([r[rule]['test_accuracy'] for r in results])}")


if __name__ == "__main__":
    main()
