"""What compression buys, measured: CPU latency of the pruned VGGs and bytes of the packed quantized SincNet.

    .venv/bin/python bench/bench_deploy.py [--work FOLDER] [--threads N] [--min-run-time S]

FOLDER holds executed reference work of both assignments, FOLDER/slimming and FOLDER/sincnet_quant (each with
its artifacts/); without --work the reference notebooks are executed first in a temporary folder
(autograde.course.make_student_work, quick profile: about 5 minutes on 2 CPU cores).

1. Latency (lib.deploy.cpu_latency: torch.utils.benchmark, median, fixed threads) of the unpruned sparse VGG and
   the two fine-tuned pruned VGGs of the slimming lab, at batch 1 and 64, with parameters and FLOPs.
2. The QAT SincNet saved with its weights packed as integers (lib.deploy.save_packed), reloaded, its outputs
   compared with the fake-quantized model's, and its bytes on disk against the float models' state dicts.
"""
import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

from autograde.course import make_student_work  # noqa: E402
from autograde.reference.sincnet_quant import STEQuantize, weight_scale  # noqa: E402
from lib import deploy, profile  # noqa: E402
from lib.checkpoint import load_model  # noqa: E402
from lib.data import speech  # noqa: E402
from lib.models import VGG, SincNet, count_flops, count_parameters  # noqa: E402
from lib.models.quant import QuantSincNet  # noqa: E402


def latency_table(artifacts, threads, min_run_time):
    """Prints parameters, FLOPs and CPU ms per forward pass of the unpruned and the fine-tuned pruned VGGs."""
    slim = profile.config("slimming")
    models = {"unpruned": load_model(artifacts / f"sparsity_{slim['sparse_tag']}.pt", VGG)[0]}
    for percent in slim["percents"]:
        models[f"pruned {percent:.0%}"] = load_model(artifacts / f"finetuned_{round(percent * 100)}.pt", VGG)[0]
    times = deploy.cpu_latency(models, (3, 32, 32), batch_sizes=(1, 64), threads=threads, min_run_time=min_run_time)
    base = times["unpruned"]
    print(f"\nVGG-19 of the slimming lab, CPU, {threads} thread(s), median of {min_run_time:g} s of runs each")
    print(f"{'model':<12}{'parameters':>11}{'MACs':>13}{'ms, batch 1':>13}{'speed-up':>9}{'ms, batch 64':>14}{'speed-up':>9}")
    for name, model in models.items():
        t1, t64 = times[name][1], times[name][64]
        print(f"{name:<12}{count_parameters(model):>11,}{count_flops(model, (3, 32, 32)):>13,}"
              f"{1e3 * t1:>13.2f}{base[1] / t1:>8.1f}x{1e3 * t64:>14.1f}{base[64] / t64:>8.1f}x")


def packed_sizes(artifacts, folder):
    """Prints the bytes on disk of the float, pruned and packed QAT SincNets, and checks the packed outputs."""
    float_model = load_model(artifacts / "sincnet_float.pt", SincNet)[0]
    pruned = load_model(artifacts / "sincnet_pruned.pt", SincNet)[0]
    qmodel = load_model(artifacts / "sincnet_quant.pt", QuantSincNet, quantizer=STEQuantize.apply,
                        weight_scale=weight_scale)[0].eval()
    sizes = {}                                         # name: (bytes of the tensors, bytes of the file)
    for name, net in (("float", float_model), ("pruned + fine-tuned", pruned)):
        torch.save(net.state_dict(), folder / f"{name}.pt")
        sizes[name] = (deploy.tensor_bytes(net.state_dict()), (folder / f"{name}.pt").stat().st_size)
    packed = deploy.save_packed(qmodel, folder / "packed.pt")
    sizes["pruned + QAT, packed"] = (packed["tensors"], packed["file"])
    reloaded = deploy.load_packed(folder / "packed.pt", STEQuantize.apply, weight_scale)
    clips, _ = next(iter(speech.loaders()["test"]))
    with torch.no_grad():
        difference = (reloaded(clips) - qmodel(clips)).abs().max().item()
    print(f"\nSincNet of sincnet_quant, state dicts saved with torch.save; cfg {float_model.cfg} -> {qmodel.cfg}")
    print(f"{'saved model':<25}{'tensors (bytes)':>16}{'vs float':>10}{'file (bytes)':>14}{'vs float':>10}")
    for name, (tensors, file) in sizes.items():
        print(f"{name:<25}{tensors:>16,}{sizes['float'][0] / tensors:>9.1f}x{file:>14,}{sizes['float'][1] / file:>9.1f}x")
    print(f"quantized conv and linear weights: {packed['float_weights']:,} bytes as float32, {packed['weights']:,} "
          f"packed ({packed['float_weights'] / packed['weights']:.1f}x)")
    print(f"packed vs fake-quantized model on {len(clips)} test clips: largest output difference {difference:.1e}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, help="folder with executed slimming/ and sincnet_quant/ reference work")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-run-time", type=float, default=1.0, help="seconds of timing per model and batch")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_deploy_"))
    try:
        work = args.work
        if work is None:
            work = tmp / "work"
            for assignment in ("slimming", "sincnet_quant"):
                make_student_work(assignment, work / assignment)
        print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other processes inflate the times); "
              f"reference work {work}")
        latency_table(work / "slimming" / "artifacts", args.threads, args.min_run_time)
        packed_sizes(work / "sincnet_quant" / "artifacts", tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
