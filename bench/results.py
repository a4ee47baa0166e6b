"""`make bench`: measure the kit on this machine and write bench/RESULTS.md, the one place measured figures live.

    .venv/bin/python bench/results.py [--work FOLDER] [--only NAME ...] [--all] [--out bench/RESULTS.md]

Executes the reference work of every assignment once (quick profile, the notebooks run as a student runs them;
their wall times are the first table), then runs each bench script below on that work and writes what it
printed under the command that printed it, with the machine (cores, CPU model, memory, load average before each
command), the versions and the date. The README and docs/ point here instead of copying numbers.

--work FOLDER reuses executed reference work (FOLDER/<assignment>, e.g. kept from an earlier run with --keep);
with --only, only those benches run again and their sections replace the earlier ones (each section says when
it ran).
--all adds the two long studies (QAT over seeds, KD over teachers: about an hour on 2 cores).
"""
import argparse
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("LAB_PROFILE", "quick")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("LAB_SEED", "0")        # the kit's seeds (lib.train.student_seed), inherited by every bench

# name: (what it measures, its arguments given the reference work folder, run by default)
BENCHES = {
    "lib": ("training speed and size of the two networks", lambda w: [], True),
    "slimming": ("the slimming notebooks' accuracies and sparsities",
                 lambda w: ["--report", w / "slimming"], True),
    "sincnet_quant": ("the sincnet_quant notebook's accuracies and sinc cut-offs",
                      lambda w: ["--work", w / "sincnet_quant"], True),
    "kd": ("the kd notebook: wall time, accuracies, its autograde time",
           lambda w: ["--slimming", w / "slimming"], True),
    "deploy": ("what compression buys: CPU latency, bytes of the packed model", lambda w: ["--work", w], True),
    "grading": ("trusted grading of one student, and cohort throughput",
                lambda w: [*(f"--reuse={a}={w / a}" for a in ("slimming", "sincnet_quant", "kd")), "-n", "10"], True),
    "cohort_dask": ("cohort throughput on Dask, and the client's cost per submission",
                    lambda w: [f"--reuse=kd={w / 'kd'}", "-n", "4"], True),
    "integrity": ("speed of the artifact-integrity and similarity checks",
                  lambda w: ["--kd", w / "kd", "--students", "200"], True),
    "sincnet_seeds": ("QAT's spread over seeds", lambda w: [
        "--pruned", w / "sincnet_quant" / "artifacts" / "sincnet_pruned.pt", "--seeds", *map(str, range(10))], False),
    "kd_teachers": ("the KD gain over teachers", lambda w: [w / "slimming" / "artifacts" / "sparsity_s0.pt"], False),
}


def machine():
    """One line: cores, CPU model, memory, GPU, Python and torch versions."""
    import torch
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    memory = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal")) / 2**20
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{os.cpu_count()} cores ({model}), {memory:.0f} GiB, {gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}, {platform.system()} {platform.release()}")


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def load():
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def clean(output):
    """What a bench printed, without progress bars (lines redrawn with carriage returns)."""
    lines = [line.rsplit("\r", 1)[-1] for line in output.split("\n")]
    return "\n".join(line for line in lines if line.strip()).strip()


def _reference_times(text):
    """{assignment: seconds} from the reference table of an existing RESULTS.md."""
    return {line.split("`")[1]: float(line.split("|")[2].split()[0]) for line in text.splitlines()
            if line.startswith("| `")}


def build_references(work):
    """Execute the reference work of every assignment into `work` (kd after slimming, whose teacher it reads);
    returns {assignment: seconds}."""
    from autograde.course import ASSIGNMENTS, RUN_AFTER, make_student_work
    order = sorted(ASSIGNMENTS, key=lambda a: a in RUN_AFTER)
    seconds = {}
    for assignment in order:
        start = time.time()
        make_student_work(assignment, work / assignment)
        seconds[assignment] = time.time() - start
        print(f"reference {assignment}: {seconds[assignment]:.0f} s", flush=True)
    return seconds


def run_bench(name, work):
    """(command as a reader types it, load before, seconds, exit status, output) of one bench script."""
    argv = [f"bench/bench_{name}.py", *map(str, BENCHES[name][1](work))]
    shown = " ".join(["python", *(a.replace(str(work), "WORK") for a in argv)])
    before = load()
    start = time.time()
    done = subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True)
    seconds = time.time() - start
    print(f"{shown}: exit {done.returncode}, {seconds:.0f} s", flush=True)
    output = clean(done.stdout + ("\n" + done.stderr if done.returncode else ""))
    return shown, before, seconds, done.returncode, output, now()


def section(name, shown, before, seconds, status, output, date):
    """The RESULTS.md section of one bench run, as lines."""
    return [f"## {name}: {BENCHES[name][0]}", "", f"    {shown}", "",
            f"{date}, load average before: {before}; {seconds:.0f} s" + (f"; FAILED (exit {status})" if status else ""),
            "", "```", output, "```", ""]


def sections(text):
    """{bench name: its section's lines} of an existing RESULTS.md (to keep those not run again)."""
    found, name = {}, None
    for line in text.splitlines():
        if line.startswith("## ") and line[3:].split(":")[0] in BENCHES:
            name = line[3:].split(":")[0]
            found[name] = []
        elif line.startswith("## "):
            name = None
        if name:
            found[name].append(line)
    return found


def write(out, header, references, runs, kept=None):
    """RESULTS.md: the header, the reference notebooks' times, and a section per bench (`runs`: {name: (shown,
    load before, seconds, exit status, output, date)}; `kept`: sections of an earlier run not run again)."""
    lines = ["# Measured figures", "",
             "Generated by `make bench` (`bench/results.py`); do not edit by hand: run it again.", "",
             f"- date: {header['date']}", f"- machine: {header['machine']}",
             f"- load average before the run: {header['load']}", "",
             "WORK below is the executed reference work of every assignment (quick profile, reference solutions),",
             "made at the start of the run; the load average is printed before each command, as other processes",
             "inflate every time here.", ""]
    if references:
        lines += ["## The reference notebooks, executed as a student runs them (quick profile)", "",
                  "| assignment | wall time |", "|---|---|"]
        lines += [f"| `{a}` | {s:.0f} s |" for a, s in references.items()]
        lines += [""]
    for name in BENCHES:
        if name in runs:
            lines += section(name, *runs[name])
        elif kept and name in kept:
            lines += kept[name] + ([""] if kept[name][-1] else [])
    out.write_text("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description="Measure the kit here and write bench/RESULTS.md.")
    parser.add_argument("--work", type=Path, help="executed reference work to reuse (FOLDER/<assignment>)")
    parser.add_argument("--keep", type=Path, help="copy the executed reference work here")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHES),
                        help="run only these benches (with --work), keeping the other sections of --out as they are")
    parser.add_argument("--all", action="store_true", help="also the long studies (QAT seeds, KD teachers)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md")
    args = parser.parse_args(argv)
    header = {"date": now(), "machine": machine(), "load": load()}
    tmp = Path(tempfile.mkdtemp(prefix="bench_results_"))
    try:
        work, references = (args.work, {}) if args.work else (tmp / "work", build_references(tmp / "work"))
        if args.keep and not args.work:
            shutil.copytree(work, args.keep)
        names = args.only or [n for n, (_, _, default) in BENCHES.items() if default or args.all]
        runs = {name: run_bench(name, work) for name in names}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    kept = None
    if args.only and args.out.exists():          # the header and the reference times stay those of the full run
        text = args.out.read_text()
        kept = sections(text)
        header = dict(header, **{key: line.split(": ", 1)[1] for line in text.splitlines()[:8]
                                 for key in ("date", "machine") if line.startswith(f"- {key}: ")})
        header["load"] = next((line.split(": ", 1)[1] for line in text.splitlines()
                               if line.startswith("- load average before the run: ")), header["load"])
        references = _reference_times(text)
    write(args.out, header, references, runs, kept)
    print(f"wrote {args.out}")
    return 1 if any(run[3] for run in runs.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
