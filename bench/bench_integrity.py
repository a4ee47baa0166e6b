"""Speed of the kd run checks (autograde/checks/kd_runs.py) and of the similarity pass (autograde/similarity.py),
in the quick profile on this machine.

    .venv/bin/python bench/bench_integrity.py [--kd FOLDER] [--students N]

1. check_kd_sweep and check_kd_distilled on an executed kd work folder (--kd, e.g. one made by
   autograde.course.make_student_work("kd", ...)); without --kd that folder is built first (minutes), and the
   KL figures check_kd_distilled decides on are printed.
2. similar_submissions on N fabricated kd submissions (default 200), each with the files a kd submission has:
   teacher.pt (the quick-profile VGG-19, 5 MB), finetuned_90.pt, student_scratch.pt, student_kd.pt and the 5
   sweep runs. Two classes: every student's checkpoints different (with one exact copy, one re-saved copy and
   one copy with 0.1% noise planted), and every student's the same (a quick-profile class: the seeded
   notebooks give honest students bitwise-identical checkpoints).
Other processes on the machine inflate the figures: the load average is printed before and after.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from autograde import similarity  # noqa: E402
from autograde.checks import kd_runs  # noqa: E402
from autograde.course import make_student_work  # noqa: E402
from lib import profile  # noqa: E402
from lib.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from lib.models import VGG  # noqa: E402

PRUNED_90 = [8, 8, 'M', 8, 9, 'M', 11, 10, 8, 10, 'M', 8, 8, 8, 8, 'M', 8, 8, 8, 48]


def load():
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def kd_figures(work):
    artifacts = Path(work) / "artifacts"
    for check in (kd_runs.check_kd_sweep, kd_runs.check_kd_distilled):
        start = time.perf_counter()
        check(artifacts)
        print(f"  {check.__name__}: {time.perf_counter() - start:.2f} s (passes)")
    batches = kd_runs._batches()
    teacher = kd_runs._teacher_logits(artifacts)
    T = profile.config("kd")["T"]
    for name, *_ in kd_runs.sweep_runs():
        model, _, _ = kd_runs._run(artifacts, name, profile.config("kd")["student_cfg"], "")
        logits = kd_runs._logits(model, batches["test"])[0]
        print(f"  KL(teacher || {name}) at T = {T}: {kd_runs._kl(teacher, logits, T):.4f}")


def fabricate(root, n, same):
    """n kd-like submission folders under root; returns {student: folder}."""
    kd = profile.config("kd")
    names = ["student_scratch", "student_kd"] + [n for n, *_ in kd_runs.sweep_runs() if n.startswith("sweep/")]
    folders = {}
    for i in range(n):
        seed = 0 if same else i
        folder = root / f"student{i:03d}"
        art = folder / "kd" / "artifacts"
        torch.manual_seed(seed)
        save_checkpoint(art / "teacher.pt", VGG(width=profile.config("vgg")["width"]), meta=dict(epoch=1))
        save_checkpoint(art / "finetuned_90.pt", VGG(PRUNED_90), meta=dict(epoch=1))
        for k, name in enumerate(names):
            torch.manual_seed(1000 * (k + 1) + seed)
            save_checkpoint(art / f"{name}.pt", VGG(kd["student_cfg"]), meta=dict(epoch=1))
        folders[folder.name] = folder
    if not same:   # plant copies: 1 = 0's kd folder, 2 re-saves 0's student_kd, 3 has 0's teacher + 0.1% noise
        shutil.rmtree(folders["student001"])
        shutil.copytree(folders["student000"], folders["student001"])
        ckpt = load_checkpoint(folders["student000"] / "kd/artifacts/student_kd.pt")
        torch.save({"cfg": ckpt["cfg"], "state_dict": ckpt["state_dict"], "meta": {"epoch": 9}},
                   folders["student002"] / "kd/artifacts/student_kd.pt")
        ckpt = load_checkpoint(folders["student000"] / "kd/artifacts/teacher.pt")
        noisy = {k: v + 1e-3 * v.std() * torch.randn_like(v) if v.is_floating_point() and v.numel() > 1 else v
                 for k, v in ckpt["state_dict"].items()}
        torch.save({"cfg": ckpt["cfg"], "state_dict": noisy, "meta": {}},
                   folders["student003"] / "kd/artifacts/teacher.pt")
    return folders


def similarity_figures(n):
    for same in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            folders = fabricate(Path(tmp), n, same)
            made = time.perf_counter() - start
            start = time.perf_counter()
            result = similarity.similar_submissions(folders)
            elapsed = time.perf_counter() - start
            flagged = sum(bool(v) for v in result.values())
            files = sum(1 for f in folders.values() for _ in similarity._checkpoint_files(f))
            kind = "all the same (a seeded quick-profile class)" if same else "all different, 3 copies planted"
            print(f"  {n} students x {files // n} checkpoints, {kind}: {elapsed:.2f} s "
                  f"({1000 * elapsed / files:.1f} ms a file; fabricated in {made:.0f} s); {flagged} flagged")
            if not same:
                print("   ", {k: v for k, v in result.items() if v})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kd", type=Path, help="an executed kd work folder (default: build one)")
    parser.add_argument("--students", type=int, default=200)
    args = parser.parse_args()
    os.environ.setdefault("LAB_PROFILE", "quick")
    print(f"bench_integrity ({profile.name()} profile, {torch.get_num_threads()} torch threads), {load()}")
    print("kd artifact checks:")
    if args.kd:
        kd_figures(args.kd)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            work = make_student_work("kd", Path(tmp) / "kd")
            print(f"  (reference kd work built in {time.perf_counter() - start:.0f} s)")
            kd_figures(work)
    print("similar_submissions:")
    similarity_figures(args.students)
    print(load())


if __name__ == "__main__":
    main()
