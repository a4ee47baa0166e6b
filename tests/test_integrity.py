"""autograde.checks.kd_runs (the kd sweep and distillation checks) on the reference work and on tampered copies of
it, and autograde.similarity's search for identical or nearly identical checkpoints across submissions.

Only the kd tests use the session fixture `reference_work` (the kd notebook executed in the quick profile); the
similarity tests fabricate small checkpoints.
"""
import pickle
import shutil
import time

import pytest
import torch

from autograde import similarity
from autograde.checks import kd_runs
from autograde.similarity import reordered_channels
from lib import profile
from lib.checkpoint import load_checkpoint, load_into, load_model, save_checkpoint
from lib.data import images
from lib.models import VGG
from lib.train import History, fit, seed_everything

# ------------------------------------------------------------------------------------------ kd artifacts


@pytest.fixture(scope="module")
def reference_artifacts(reference_work):
    return reference_work("kd") / "artifacts"


@pytest.fixture
def artifacts(reference_artifacts, tmp_path):
    """A private copy of the reference kd artifacts, to break."""
    return shutil.copytree(reference_artifacts, tmp_path / "artifacts")


def _sweep_cells():
    """The names of the sweep runs the notebook trains under sweep/ (not the reused student_kd)."""
    return [name for name, T, _, _ in kd_runs.sweep_runs() if name.startswith("sweep/") and T is not None]


def test_reference_work_passes(reference_artifacts):
    start = time.perf_counter()
    kd_runs.check_kd_sweep(reference_artifacts)
    sweep_time = time.perf_counter() - start
    kd_runs.check_kd_distilled(reference_artifacts)
    distilled_time = time.perf_counter() - start - sweep_time
    print(f"check_kd_sweep {sweep_time:.2f} s, check_kd_distilled {distilled_time:.2f} s")
    assert sweep_time < 30 and distilled_time < 30


def test_sweep_runs_follow_the_profile():
    """In the quick profile the sweep budget is the students': the (T, alpha) of the KD run and the scratch run
    are reused, the 5 other cells are trained under sweep/ with the notebook's names."""
    config = profile.config("kd")
    runs = kd_runs.sweep_runs(config)
    assert len(runs) == len(config["sweep"]["T"]) * len(config["sweep"]["alpha"]) + 1
    names = [name for name, *_ in runs]
    assert "student_kd" in names and "student_scratch" in names and "sweep/T1_alpha0.9" in names
    full = kd_runs.sweep_runs(profile.config("kd", "full"))
    assert [name for name, *_ in full][-1] == "sweep/scratch" and "student_kd" not in [n for n, *_ in full]
    _, T, alpha, expected = next(r for r in runs if r[0] == "sweep/T20_alpha0.9")
    assert (T, alpha, expected["T"], expected["alpha"]) == (20, 0.9, 20, 0.9)
    assert expected["milestones"] == list(config["student"]["milestones"])   # as History saves it


def test_missing_sweep_run_fails(artifacts):
    name = _sweep_cells()[1]
    (artifacts / f"{name}.pt").unlink()
    with pytest.raises(AssertionError, match=rf"{name}\.pt: no such checkpoint file.*sweep cell"):
        kd_runs.check_kd_sweep(artifacts)


def test_wrong_t_in_a_sweep_history_fails(artifacts):
    path = artifacts / "sweep" / "T20_alpha0.5.json"
    history = History.load(path)
    history.config["T"] = 4
    history.save(path)
    with pytest.raises(AssertionError, match=r"T20_alpha0\.5\.json .* records T = 4, expected T = 20"):
        kd_runs.check_kd_sweep(artifacts)


def test_fabricated_accuracy_in_a_sweep_history_fails(artifacts):
    path = artifacts / "sweep" / "T1_alpha0.5.json"
    history = History.load(path)
    best = history.best
    best["val_accuracy"] = min(100.0, best["val_accuracy"] + 3.0)   # still the best epoch, as the checkpoint's
    history.save(path)
    with pytest.raises(AssertionError, match=r"T1_alpha0\.5\.pt: evaluated at .* its history records"):
        kd_runs.check_kd_sweep(artifacts)


def test_short_sweep_run_fails(artifacts):
    path = artifacts / "sweep" / "T4_alpha0.9.json"
    history = History.load(path)
    history.records = [r for r in history.records if r["epoch"] <= history.best["epoch"]][-3:]
    history.save(path)
    epochs = profile.config("kd")["sweep"]["epochs"]
    with pytest.raises(AssertionError, match=rf"T4_alpha0\.9\.json has the epochs .* the sweep trains {epochs}"):
        kd_runs.check_kd_sweep(artifacts)


def test_sweep_cell_copied_from_another_run_fails(artifacts):
    """One training relabelled as another (T, alpha): its history config is right, its accuracy too."""
    name = _sweep_cells()[0]
    shutil.copyfile(artifacts / "student_kd.pt", artifacts / f"{name}.pt")
    target = History.load(artifacts / f"{name}.json")
    History(target.config, History.load(artifacts / "student_kd.json").records).save(artifacts / f"{name}.json")
    either_way = rf"(student_kd|{name})\.pt has the same weights as ({name}|student_kd)\.pt"
    with pytest.raises(AssertionError, match=either_way):
        kd_runs.check_kd_sweep(artifacts)


def _fabricate_run(artifacts, source, target, nudge=1e-7):
    """artifacts/<target>.pt/.json := the run `source` with its channels reordered, under the target's history
    config, its training curve copied with every loss nudged by `nudge` (relative)."""
    model, meta = load_model(artifacts / f"{source}.pt", VGG)
    save_checkpoint(artifacts / f"{target}.pt", reordered_channels(model), meta=meta)
    records = [dict(r, train_loss=r["train_loss"] * (1 + nudge), val_loss=r["val_loss"] * (1 + nudge))
               for r in History.load(artifacts / f"{source}.json").records]
    History(History.load(artifacts / f"{target}.json").config, records).save(artifacts / f"{target}.json")


def test_sweep_run_fabricated_from_a_student_run_fails(artifacts):
    """A sweep cell filled with another seed's KD student, its channels reordered (other weights, the same
    function) and its curve nudged by 1e-7: every run is compared with every other, by what it computes."""
    target = _sweep_cells()[2]
    _fabricate_run(artifacts, "student_kd_seed1", target)
    params = similarity.checkpoint_distance(load_checkpoint(artifacts / "student_kd_seed1.pt")["state_dict"],
                                           load_checkpoint(artifacts / f"{target}.pt")["state_dict"])
    assert params > 1.0, "reordering the channels should change the weights"
    either_way = rf"({target}|student_kd_seed1)\.pt has the same weights as (student_kd_seed1|{target})\.pt, up to"
    with pytest.raises(AssertionError, match=either_way):
        kd_runs.check_kd_sweep(artifacts)


def test_student_run_fabricated_from_another_fails(artifacts):
    _fabricate_run(artifacts, "student_kd", "student_kd_seed2")
    with pytest.raises(AssertionError, match=r"has the same weights as .* up to reordered channels"):
        kd_runs.check_kd_distilled(artifacts)


def test_a_nudged_copy_of_a_curve_is_the_same_curve(reference_artifacts):
    honest = History.load(reference_artifacts / "student_kd.json")
    nudged = History(honest.config, [dict(r, train_loss=r["train_loss"] + 1e-7, val_loss=r["val_loss"] * (1 - 1e-7))
                                     for r in honest.records])
    assert kd_runs.same_curve(honest, nudged)
    assert not kd_runs.same_curve(honest, History.load(reference_artifacts / "student_kd_seed1.json"))
    assert not kd_runs.same_curve(honest, History.load(reference_artifacts / "student_scratch.json"))


def test_symlinked_artifact_is_refused(artifacts, tmp_path):
    name = _sweep_cells()[0]
    elsewhere = tmp_path / "elsewhere.pt"
    (artifacts / f"{name}.pt").rename(elsewhere)
    (artifacts / f"{name}.pt").symlink_to(elsewhere)
    with pytest.raises(AssertionError, match="symbolic link"):
        kd_runs.check_kd_sweep(artifacts)


def _relabel(artifacts, source):
    """student_kd.pt/.json := the scratch run `source` (.pt/.json) with T and alpha added to its config."""
    shutil.copyfile(source.with_suffix(".pt"), artifacts / "student_kd.pt")
    history = History.load(source.with_suffix(".json"))
    config = profile.config("kd")
    History(dict(history.config, T=config["T"], alpha=config["alpha"]), history.records).save(
        artifacts / "student_kd.json")


def test_relabelled_scratch_student_fails(artifacts):
    _relabel(artifacts, artifacts / "student_scratch.pt")
    with pytest.raises(AssertionError, match="student_kd.pt has the same weights as student_scratch.pt"):
        kd_runs.check_kd_distilled(artifacts)


def test_scratch_student_resaved_with_tiny_noise_and_relabelled_fails(artifacts):
    _relabel(artifacts, artifacts / "student_scratch.pt")
    ckpt = load_checkpoint(artifacts / "student_kd.pt")
    model = VGG(ckpt["cfg"])
    load_into(model, artifacts / "student_kd.pt")
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 1e-3 * p.std())
    save_checkpoint(artifacts / "student_kd.pt", model, meta=ckpt["meta"])
    with pytest.raises(AssertionError, match="same weights as student_scratch.pt"):
        kd_runs.check_kd_distilled(artifacts)


@pytest.fixture(scope="module")
def other_seed_scratch(tmp_path_factory):
    """A second scratch student: the notebook's setup with seed 1 (10-20 s of training); its .pt path."""
    config = profile.config("kd")
    hp = config["student"]
    path = tmp_path_factory.mktemp("other_seed") / "scratch_seed1.pt"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # two threads fighting other processes for 2 cores take minutes
    try:
        seed_everything(1)
        model = VGG(config["student_cfg"])
        fit(model, images.loaders(batch_size=hp["batch_size"], seed=0), hp, save_path=path, seed=1,
            device=torch.device("cpu"), progress=False)
    finally:
        torch.set_num_threads(threads)
    return path


def test_scratch_student_of_another_seed_relabelled_fails(artifacts, other_seed_scratch):
    """A second scratch run submitted as the KD student: different weights and curves, a plausible accuracy;
    only its behaviour gives it away."""
    _relabel(artifacts, other_seed_scratch)
    with pytest.raises(AssertionError, match="student_kd.pt does not behave like a student distilled from teacher"):
        kd_runs.check_kd_distilled(artifacts)


def test_sweep_cell_replaced_by_a_scratch_run_fails(artifacts, other_seed_scratch):
    """A sweep cell with T > 1 filled with a scratch run (its history relabelled with the cell's setup)."""
    shutil.copyfile(other_seed_scratch, artifacts / "sweep" / "T20_alpha0.9.pt")
    history = History.load(other_seed_scratch.with_suffix(".json"))
    expected = History.load(artifacts / "sweep" / "T20_alpha0.9.json").config
    History(expected, history.records).save(artifacts / "sweep" / "T20_alpha0.9.json")
    with pytest.raises(AssertionError, match=r"T20_alpha0\.9\.pt does not behave like a student distilled"):
        kd_runs.check_kd_sweep(artifacts)


def test_pickle_in_place_of_the_kd_student_is_refused(artifacts, tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"cfg": profile.config("kd")["student_cfg"], "state_dict": _Payload(marker), "meta": {}},
               artifacts / "student_kd.pt")
    with pytest.raises(AssertionError, match="student_kd.pt: not a readable checkpoint"):
        kd_runs.check_kd_distilled(artifacts)
    assert not marker.exists()


def test_replaced_teacher_fails(artifacts):
    """The teacher the behaviour is measured against must be the profile's VGG-19."""
    shutil.copyfile(artifacts / "student_kd.pt", artifacts / "teacher.pt")
    shutil.copyfile(artifacts / "student_kd.json", artifacts / "teacher.json")
    with pytest.raises(AssertionError, match=r"teacher.pt has cfg .* expected .*VGG-19"):
        kd_runs.check_kd_distilled(artifacts)


# ------------------------------------------------------------------------------------- similar submissions

CFG = [8, 'M', 16, 'M', 16, 'M', 16, 'M', 16]     # takes 32x32 images (VGG's classifier reads a 2x2 map)


def _model(seed):
    torch.manual_seed(seed)
    return VGG(CFG)


def _submit(root, student, models):
    """root/<student>/ with artifacts/<name>.pt for every {name: model}; returns the folder."""
    folder = root / student
    for name, model in models.items():
        save_checkpoint(folder / "artifacts" / f"{name}.pt", model, meta=dict(epoch=1))
    (folder / "artifacts").mkdir(parents=True, exist_ok=True)
    return folder


def _noised(model, scale, seed=0):
    copy = VGG(model.cfg)
    copy.load_state_dict(model.state_dict())
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in copy.state_dict().values():
            if t.is_floating_point() and t.numel() > 1:
                t.add_(torch.randn(t.shape, generator=g) * scale * t.std())
    return copy


def test_similar_submissions_finds_copies(tmp_path):
    alice = _submit(tmp_path, "alice", {"student_kd": _model(0), "teacher": _model(10)})
    bob = tmp_path / "bob"                              # an exact copy of alice's files
    shutil.copytree(alice, bob)
    carol = _submit(tmp_path, "carol", {"teacher": _model(11)})   # alice's student_kd loaded and saved again
    ckpt = load_checkpoint(alice / "artifacts" / "student_kd.pt")
    torch.save({"cfg": ckpt["cfg"], "meta": {"epoch": 7, "by": "carol"},
                "state_dict": {k: v.clone() for k, v in reversed(ckpt["state_dict"].items())}},
               carol / "artifacts" / "student_kd.pt")
    assert (carol / "artifacts" / "student_kd.pt").read_bytes() != (alice / "artifacts" / "student_kd.pt").read_bytes()
    dave = _submit(tmp_path, "dave", {"student_kd": _noised(_model(0), 1e-3), "teacher": _model(12)})
    erin = _submit(tmp_path, "erin", {"student_kd": _model(1), "teacher": _model(13)})     # independent
    frank = _submit(tmp_path, "frank", {"student_kd": _model(2), "teacher": _model(14)})   # independent
    folders = dict(alice=alice, bob=bob, carol=carol, dave=dave, erin=erin, frank=frank)

    assert similarity.similar_submissions(folders) == {
        "alice": ["bob", "carol", "dave"], "bob": ["alice", "carol", "dave"], "carol": ["alice", "bob", "dave"],
        "dave": ["alice", "bob", "carol"], "erin": [], "frank": []}
    matches = {(m.student, m.other): m for m in similarity.find_similar_checkpoints(folders)}
    assert matches["alice", "carol"].distance == 0.0 and matches["alice", "bob"].distance == 0.0
    assert 0 < matches["alice", "dave"].distance < 1e-2
    assert {m.path.name for m in matches.values() if m.student == "alice" and m.other == "bob"} <= {
        "student_kd.pt", "teacher.pt"}


def test_a_copy_with_its_channels_reordered_is_found(tmp_path):
    """mallory submits alice's network with its channels reordered: other weights (parameter by parameter as far
    apart as two unrelated networks), the same function; found by what it computes."""
    trained = _model(0)
    with torch.no_grad():                      # not a fresh network: BatchNorm statistics and scales of its own
        for name, t in trained.state_dict().items():
            if t.is_floating_point() and "feature" in name and t.dim() == 1:
                t.uniform_(0.2, 1.5)
    copy = reordered_channels(trained)
    assert similarity.checkpoint_distance(trained.state_dict(), copy.state_dict()) > 1.0
    folders = {"alice": _submit(tmp_path, "alice", {"student_kd": trained}),
               "mallory": _submit(tmp_path, "mallory", {"student_kd": copy}),
               "erin": _submit(tmp_path, "erin", {"student_kd": _model(1)})}
    assert similarity.similar_submissions(folders) == {"alice": ["mallory"], "erin": [], "mallory": ["alice"]}


def test_fresh_networks_are_not_similar_and_noise_has_a_limit(tmp_path):
    """Two networks that start from the same constants (BatchNorm 0.5 and 0) but other random weights are
    unrelated; a copy with 20% noise is no longer reported."""
    a, b = _model(0), _model(1)
    assert similarity.checkpoint_distance(a.state_dict(), b.state_dict()) > 1.0
    assert similarity.checkpoint_distance(a.state_dict(), a.state_dict()) == 0.0
    assert similarity.checkpoint_distance(a.state_dict(), _noised(a, 1e-2).state_dict()) == pytest.approx(1e-2, rel=0.2)
    assert similarity.checkpoint_distance(a.state_dict(), VGG([8, 'M', 12]).state_dict()) == float("inf")
    folders = {"x": _submit(tmp_path, "x", {"m": a}), "y": _submit(tmp_path, "y", {"m": _noised(a, 0.2)})}
    assert similarity.similar_submissions(folders) == {"x": [], "y": []}


class _Payload:
    """A pickle that creates `marker` when it is unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_pickle_checkpoints_are_never_unpickled(tmp_path):
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Payload(probe)))   # the payload does work when unpickled
    assert probe.exists()

    marker = tmp_path / "pwned"
    alice = _submit(tmp_path, "alice", {"student_kd": _model(0)})
    mallory = _submit(tmp_path, "mallory", {})
    torch.save({"cfg": CFG, "state_dict": _Payload(marker), "meta": {}}, mallory / "artifacts" / "student_kd.pt")
    with open(mallory / "artifacts" / "legacy.pt", "wb") as file:
        pickle.dump(_Payload(marker), file)
    (mallory / "artifacts" / "truncated.pt").write_bytes((alice / "artifacts" / "student_kd.pt").read_bytes()[:100])
    (mallory / "artifacts" / "copy.pt").symlink_to(alice / "artifacts" / "student_kd.pt")   # links are not followed

    assert similarity.similar_submissions({"alice": alice, "mallory": mallory}) == {"alice": [], "mallory": []}
    assert not marker.exists()


def test_two_hundred_students_find_their_two_pairs_of_copies(tmp_path):
    """200 submissions of 3 small checkpoints each, two pairs of copies among them. (How fast: the timing is
    bench/bench_integrity.py's, not a bound here: a loaded machine would fail a correct pass.)"""
    folders = {}
    for i in range(200):
        folders[f"s{i:03d}"] = _submit(tmp_path, f"s{i:03d}", {name: _model(1000 * k + i) for k, name in
                                                              enumerate(("student_kd", "student_scratch", "x"))})
    shutil.rmtree(folders["s007"])
    shutil.copytree(folders["s003"], folders["s007"])
    save_checkpoint(folders["s150"] / "artifacts" / "x.pt",
                    _noised(_model(2000 + 42), 1e-3), meta={})
    start = time.perf_counter()
    result = similarity.similar_submissions(folders)
    elapsed = time.perf_counter() - start
    print(f"similar_submissions: 200 students x 3 checkpoints in {elapsed:.2f} s")
    flagged = {student: others for student, others in result.items() if others}
    assert flagged == {"s003": ["s007"], "s007": ["s003"], "s042": ["s150"], "s150": ["s042"]}


def test_checkpoints_without_float_tensors_stop_no_similarity_pass(tmp_path):
    """Two students with a float-free .pt at the same path crashed the whole similarity pass (nobody got
    similar_to, the summary was not printed, and a rerun crashed the same way)."""
    folders = {}
    for student, value in (("ann", 3), ("bob", 4), ("cat", 3)):
        folders[student] = tmp_path / student
        (folders[student] / "artifacts").mkdir(parents=True)
        torch.save({"cfg": [], "state_dict": {"n": torch.tensor(value)}, "meta": {}},
                   folders[student] / "artifacts" / "odd.pt")
    assert similarity.similar_submissions(folders) == {"ann": ["cat"], "bob": [], "cat": ["ann"]}


def _similarity_pass_peak_mib(folders):
    """Peak resident memory (VmHWM, MiB) of a fresh process that runs the cohort client's similarity pass on
    `folders` ({student: folder}), and its result."""
    import json
    import subprocess
    import sys
    script = ("import json, sys\nfrom pathlib import Path\nfrom autograde.similarity import similar_submissions\n"
              "folders = {s: Path(f) for s, f in json.loads(sys.argv[1]).items()}\n"
              "similar = similar_submissions(folders)\n"
              "peak = [line for line in open('/proc/self/status') if line.startswith('VmHWM')][0]\n"
              "print(json.dumps([int(peak.split()[1]) // 1024, similar]))\n")
    done = subprocess.run([sys.executable, "-c", script, json.dumps({s: str(f) for s, f in folders.items()})],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_the_similarity_pass_holds_few_checkpoints_at_once(tmp_path):
    """The cohort client reads every student's checkpoints in the similarity pass. A hostile class (students
    with many large, nearly identical checkpoints: each a candidate that is loaded in full, and one checkpoint
    larger than any file the grader grades) must not take its memory far past an honest class's: at most two
    checkpoints are held at once, each at most MAX_CHECKPOINT_BYTES, and none is copied whole into float64. Measured
    as the peak resident memory of a process running the pass."""
    honest = {s: _submit(tmp_path / "honest", s, {"student_kd": _model(i)}) for i, s in enumerate(("ann", "bo"))}
    baseline, similar = _similarity_pass_peak_mib(honest)
    assert similar == {"ann": [], "bo": []}

    big = torch.randn(150 * 2**20 // 4, generator=torch.Generator().manual_seed(0))       # 150 MiB of floats
    hostile = {}
    for i, student in enumerate(("mal", "lory")):
        artifacts = tmp_path / "hostile" / student / "artifacts"
        artifacts.mkdir(parents=True)
        for copy in range(4):            # nearly the same file as the other student's: compared in full
            torch.save({"cfg": [1], "meta": {}, "state_dict": {"w": big + i * 1e-7}}, artifacts / f"copy{copy}.pt")
        torch.save({"cfg": [1], "meta": {}, "state_dict": {"w": torch.cat([big, big]) + i}},
                   artifacts / "oversized.pt")                                             # 300 MiB
        hostile[student] = artifacts.parent
    del big
    peak, similar = _similarity_pass_peak_mib(hostile)
    assert similar == {"lory": ["mal"], "mal": ["lory"]}
    bound = 3 * 150 + 100       # MiB: two of these checkpoints held, a third being read, and the rest
    assert peak - baseline <= bound, (
        f"the similarity pass took {peak} MiB on the hostile class, {baseline} MiB on an honest one: "
        f"{peak - baseline} MiB more, over the {bound:.0f} MiB bound")
