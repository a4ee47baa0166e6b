"""The kd assignment: the reference kd_loss and its checks, the mutants, the distillation loop, the artifact checks.

The reference work (the notebook executed in the quick profile) is shared with the grader self-test through
the session fixture `reference_work`.
"""
import io
import random
import shutil
import sys

import nbformat
import pytest
import torch

from records import Liar, judge_each_tampering, round_trip, same_plain_data
from autograde.checks import kd as checks
from autograde.checks.common import VisibleCheckFailed
from autograde.course import REPO, SOLUTIONS, execute, fill_solutions, nbgrader_id
from autograde.mutants.kd import MUTANTS
from autograde.probes import kd as probes
from autograde.reference import define
from autograde.reference.kd import kd_loss
from lib import profile
from lib.checkpoint import save_checkpoint
from lib.models import VGG
from lib.train import History, distillation_step, fit


def _mutant_kd_loss(mutant):
    return define("kd", mutant.notebook, mutant.cell, mutant.code)["kd_loss"]


def test_reference_passes_the_checks():
    checks.check_kd_loss(kd_loss)


def test_hand_computed_example():
    # one example, two classes, T = 2, alpha = 0.5, worked out on paper
    s, t, y = torch.tensor([[0.0, 2.0]]), torch.tensor([[2.0, 0.0]]), torch.tensor([0])
    p_s = torch.softmax(s / 2, 1)[0]
    p_t = torch.softmax(t / 2, 1)[0]
    kl = (p_t * (p_t / p_s).log()).sum()
    ce = -torch.log_softmax(s, 1)[0, 0]
    assert torch.isclose(kd_loss(s, t, y, 2.0, 0.5), 0.5 * 4 * kl + 0.5 * ce)


def test_gradient_of_the_soft_term():
    torch.manual_seed(1)
    s = (torch.randn(4, 5) * 2).requires_grad_(True)
    t = torch.randn(4, 5) * 2
    kd_loss(s, t, torch.zeros(4, dtype=torch.long), 3.0, 1.0).backward()
    expected = 3.0 * (torch.softmax(s.detach() / 3, 1) - torch.softmax(t / 3, 1)) / 4
    assert torch.allclose(s.grad, expected, atol=1e-6)


def test_there_are_the_four_required_mutants():
    names = {m.name for m in MUTANTS}
    assert {"missing T^2", "reversed KL", "softmax instead of log_softmax",
            "'mean' reduction instead of 'batchmean'"} <= names
    assert all(m.notebook == "kd" and m.cell == "kd_loss" and m.target == "test_kd_loss" for m in MUTANTS)


@pytest.mark.filterwarnings("ignore::UserWarning")   # the 'mean' mutant makes F.kl_div warn
@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_every_mutant_fails_the_checks(mutant):
    with pytest.raises(AssertionError, match=HINTS[mutant.name]):
        checks.check_kd_loss(_mutant_kd_loss(mutant))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_mutant_messages_name_the_bug():
    expected = {"missing T^2": r"T\^2", "reversed KL": "reversed", "softmax instead of log_softmax": "LOG-probabilities",
                "'mean' reduction instead of 'batchmean'": "batchmean"}
    for mutant in MUTANTS:
        if mutant.name in expected:
            with pytest.raises(AssertionError, match=expected[mutant.name]):
                checks.check_kd_loss(_mutant_kd_loss(mutant))


# ----------------------------------------------------------------------------------- probe and judge
# round_trip, tamperings, same_plain_data and Liar: the record helpers of tests/test_slimming.py.

SEEDS = (0, 1, 12345)
HINTS = {"missing T^2": r"T\^2", "reversed KL": "reversed", "softmax instead of log_softmax": "LOG-probabilities",
         "'mean' reduction instead of 'batchmean'": "batchmean",
         "student logits detached in the soft term": "gradient of kd_loss w.r.t. the student logits"}


def probed(kd_loss, seed):
    return round_trip(probes.probe_kd_loss(kd_loss, seed))


@pytest.mark.parametrize("seed", SEEDS)
def test_reference_passes_the_judge(seed):
    checks.judge_kd_loss(probed(kd_loss, seed), seed)


def test_every_mutant_has_a_hint():
    assert {m.name for m in MUTANTS} == set(HINTS)


@pytest.mark.filterwarnings("ignore::UserWarning")   # the 'mean' mutant makes F.kl_div warn
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_mutant_fails_the_judge_with_its_hint(mutant, seed):
    with pytest.raises(AssertionError, match=HINTS[mutant.name]):
        checks.judge_kd_loss(probed(_mutant_kd_loss(mutant), seed), seed)


def test_a_mutant_that_fails_the_visible_test_is_marked():
    mutant = next(m for m in MUTANTS if m.name == "softmax instead of log_softmax")
    with pytest.raises(VisibleCheckFailed, match="student == teacher"):
        checks.judge_kd_loss(probed(_mutant_kd_loss(mutant), 0), 0)


def test_record_is_plain_data_of_a_few_hundred_kb():
    record = probes.probe_kd_loss(kd_loss, 7)
    buffer = io.BytesIO()
    torch.save(record, buffer)
    assert buffer.tell() < 2**20
    assert same_plain_data(record, round_trip(record))


def test_probe_leaves_the_callers_random_state_alone():
    def noisy(*args):
        random.random()
        torch.rand(3)
        return kd_loss(*args)

    torch_state, python_state = torch.get_rng_state(), random.getstate()
    probes.probe_kd_loss(noisy, 3)
    assert torch.equal(torch.get_rng_state(), torch_state) and random.getstate() == python_state


def _liar_kd_loss(*args):
    return kd_loss(*args).as_subclass(Liar)


def _exits(*args):
    sys.exit(3)


def _blank(*args):
    raise NotImplementedError()


@pytest.mark.parametrize("student", [
    lambda *args: kd_loss(*args).item(), lambda *args: [kd_loss(*args)], lambda *args: "0.5",
    lambda *args: kd_loss(*args).reshape(1), lambda *args: kd_loss(*args) * float("nan"),
    lambda *args: kd_loss(*args).detach(), lambda s, t, y, T, alpha: 1 / 0, _exits, _blank, "not a function"],
    ids=["float", "list", "str", "1-d", "nan", "detached", "raises", "exits", "blank", "str instead"])
def test_kd_loss_of_any_kind_gets_an_assertion_error(student):
    with pytest.raises(AssertionError):
        checks.judge_kd_loss(probed(student, 0), 0)


def test_a_tensor_subclass_is_read_for_its_value():
    """A subclass that shows zeros when detached: the probe copies its real values, which are right."""
    checks.judge_kd_loss(probed(_liar_kd_loss, 0), 0)


def test_tampered_records_give_assertion_errors():
    record = probed(kd_loss, 0)
    judge_each_tampering(lambda tampered: checks.judge_kd_loss(tampered, 0), record, random.Random(3), count=60)
    first = record["experiments"][0]
    for change in ({"loss": {"type": "Tensor", "tensor": "0.5"}}, {"loss": dict(first["loss"], tensor=torch.ones(3))},
                   {}, {"loss": None}):
        with pytest.raises(AssertionError):
            checks.judge_kd_loss(dict(record, experiments=[change] + record["experiments"][1:]), 0)
    with pytest.raises(AssertionError):
        checks.judge_kd_loss(dict(record, experiments=record["experiments"][:-1]), 0)


def test_distillation_step_leaves_the_teacher_untouched():
    """The teacher is in eval mode, gets no gradient, and its BN running statistics do not move."""
    torch.manual_seed(0)
    teacher, student = VGG([4, 'M', 6], num_classes=10), VGG([3, 'M', 4], num_classes=10)
    teacher.train()   # even a teacher left in training mode must not update its statistics
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    data = torch.utils.data.TensorDataset(torch.randn(32, 3, 4, 4), torch.randint(0, 10, (32,)))
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    hp = dict(epochs=1, lr=0.1, momentum=0.9, weight_decay=0.0, milestones=())
    fit(student, {"train": loader, "val": loader}, hp, step=distillation_step(teacher, kd_loss, 4.0, 0.9),
        device=torch.device("cpu"), progress=False)
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), f"the teacher's {k} changed during distillation"
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())


def test_distillation_gains_with_the_teacher_a_one_thread_slimming_run_makes(tmp_path):
    """The lesson holds for the teacher of a student whose slimming notebooks ran on one torch thread (as
    `make demo` runs them): the notebook's own test passes, and KD gains on test for every seed.

    The teacher's weights depend on the thread count (rounding), and with the old setting (20% of the images,
    30 epochs) this teacher left KD +1.9 validation points over seeds 0-2: the reference notebook failed its
    own test in `make demo`. bench/bench_kd_teachers.py measures the setting over more teachers and seeds."""
    sys.path.insert(0, str(REPO / "bench"))
    from bench_kd_teachers import train_student
    from lib.data import images
    from lib.teacher import CachedTeacher, load_teacher
    from lib.train import cross_entropy_step, evaluate

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        teacher, _ = load_teacher(slimming=tmp_path / "no_slimming", artifacts=tmp_path, device=torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    config = profile.config("kd")
    hp, test = config["student"], images.loaders()["test"]
    step = distillation_step(CachedTeacher(teacher), kd_loss, config["T"], config["alpha"])
    val_gain, test_gain = [], []
    for seed in config["seeds"]:
        scratch, scratch_val = train_student(config, hp, seed, cross_entropy_step)
        kd, kd_val = train_student(config, hp, seed, step)
        if seed == config["seeds"][0]:
            assert kd_val >= config["kd_accuracy"] and kd_val >= scratch_val - config["margin"], (kd_val, scratch_val)
        val_gain.append(kd_val - scratch_val)
        test_gain.append(evaluate(kd, test, progress=False)[1] - evaluate(scratch, test, progress=False)[1])
    assert sum(val_gain) / len(val_gain) >= config["min_gain"], val_gain      # the notebook's test
    assert min(test_gain) > 0, test_gain                                       # what the notebook reports


# ------------------------------------------------------------------------------- the submitted artifacts

@pytest.fixture(scope="module")
def reference_artifacts(reference_work):
    return reference_work("kd") / "artifacts"


@pytest.fixture
def artifacts(reference_artifacts, tmp_path):
    """A private copy of the reference artifacts, to break."""
    return shutil.copytree(reference_artifacts, tmp_path / "artifacts")


def test_reference_artifacts_pass(reference_artifacts):
    checks.check_kd_student(reference_artifacts)
    for name in ("teacher.pt", "student_cfg.json", "kd_vs_scratch.png", "sweep_heatmap.png"):
        assert (reference_artifacts / name).is_file(), f"the notebook did not save {name}"


def test_reference_kd_student_meets_the_profile(reference_artifacts):
    """The documented calibration: the KD student beats the threshold; KD is not worse than scratch."""
    config = profile.config("kd")
    kd = History.load(reference_artifacts / "student_kd.json").best["val_accuracy"]
    scratch = History.load(reference_artifacts / "student_scratch.json").best["val_accuracy"]
    assert kd >= config["kd_accuracy"] and kd >= scratch - config["margin"]


def test_missing_kd_student_fails(artifacts):
    (artifacts / "student_kd.pt").unlink()
    with pytest.raises(AssertionError, match="student_kd.pt"):
        checks.check_kd_student(artifacts)


def test_kd_history_without_t_and_alpha_fails(artifacts):
    path = artifacts / "student_kd.json"
    history = History.load(path)
    del history.config["T"], history.config["alpha"]
    history.save(path)
    with pytest.raises(AssertionError, match="student_kd.json records T = None"):
        checks.check_kd_student(artifacts)


def test_kd_student_trained_with_another_alpha_fails(artifacts):
    """alpha = 0 is training from scratch with extra steps: the KD run must use the profile's T and alpha."""
    path = artifacts / "student_kd.json"
    history = History.load(path)
    history.config["alpha"] = 0.0
    history.save(path)
    with pytest.raises(AssertionError, match="alpha = 0.0"):
        checks.check_kd_student(artifacts)


def test_untrained_kd_student_with_a_copied_history_fails(artifacts):
    """Printed or recorded numbers are not trusted: the checkpoint is evaluated."""
    history = History.load(artifacts / "student_kd.json")
    torch.manual_seed(0)
    save_checkpoint(artifacts / "student_kd.pt", VGG(_cfg(artifacts)),
                    meta=dict(epoch=history.best["epoch"]))
    with pytest.raises(AssertionError, match=r"student_kd.pt evaluates to [\d.]+% on the validation split, but its "
                                             r"history recorded [\d.]+% for that epoch"):
        checks.check_kd_student(artifacts)


def test_kd_student_far_below_scratch_fails(artifacts, monkeypatch):
    monkeypatch.setitem(profile.TABLES[profile.name()]["kd"], "margin", -100.0)
    with pytest.raises(AssertionError, match="seed noise"):
        checks.check_kd_student(artifacts)


def _cfg(artifacts):
    import json
    return json.loads((artifacts / "student_cfg.json").read_text())["cfg"]


# ----------------------------------------------------------------- the teacher and the slimming artifacts

def _first_cells(folder, upto="student"):
    """The reference kd notebook in `folder`, cut after the cell `upto` (setup, teacher, student: fast)."""
    (path,) = fill_solutions("kd", folder)
    nb = nbformat.read(path, as_version=4)
    ids = [nbgrader_id(c) for c in nb.cells]
    nb.cells = nb.cells[:ids.index(upto) + 1]
    nbformat.write(nb, path)
    return path


def _fake_slimming(root, reference_artifacts):
    """../slimming/artifacts as the slimming notebooks leave it: the lambda = 0 run and the 90% fine-tuned net."""
    slimming = root / "slimming" / "artifacts"
    slimming.mkdir(parents=True)
    shutil.copyfile(reference_artifacts / "teacher.pt", slimming / "sparsity_s0.pt")
    History(dict(profile.config("vgg"), s=0.0), History.load(reference_artifacts / "teacher.json").records).save(
        slimming / "sparsity_s0.json")
    torch.manual_seed(0)
    pruned = VGG([5, 5, 'M', 7, 11, 'M', 10, 10, 13, 14, 'M', 6, 2, 2, 2, 'M', 2, 2, 2, 50])
    save_checkpoint(slimming / "finetuned_90.pt", pruned, meta=dict(epoch=1))
    History({"percent": 0.9}, [dict(epoch=1, val_accuracy=10.0)]).save(slimming / "finetuned_90.json")
    return slimming


def _outputs(path):
    nb = nbformat.read(path, as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_the_notebook_copies_teacher_and_pruned_model_from_slimming(reference_artifacts, tmp_path):
    slimming = _fake_slimming(tmp_path, reference_artifacts)
    path = _first_cells(tmp_path / "kd")
    execute(path)
    artifacts = tmp_path / "kd" / "artifacts"
    assert "slimming assignment" in _outputs(path)
    for name, source in (("teacher", "sparsity_s0"), ("finetuned_90", "finetuned_90")):
        for suffix in (".pt", ".json"):
            assert (artifacts / f"{name}{suffix}").read_bytes() == (slimming / f"{source}{suffix}").read_bytes()
    assert (artifacts / "student_cfg.json").is_file()


def test_grading_uses_only_the_submitted_artifacts(reference_artifacts, tmp_path, monkeypatch):
    """Under nbgrader the notebook ignores ../slimming (another student's, or none) and loads its own teacher."""
    _fake_slimming(tmp_path, reference_artifacts)
    (tmp_path / "slimming" / "artifacts" / "sparsity_s0.pt").write_bytes(b"not a checkpoint")
    path = _first_cells(tmp_path / "kd")
    # a submission without the pruned net: grading must not fetch it from ../slimming either
    shutil.copytree(reference_artifacts, tmp_path / "kd" / "artifacts", ignore=shutil.ignore_patterns("finetuned_90.*"))
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    execute(path)
    assert "the submitted artifacts/teacher.pt" in _outputs(path)
    assert not (tmp_path / "kd" / "artifacts" / "finetuned_90.pt").exists()


def _visible_test_source():
    """The visible part of the solution's test_kd_loss cell: what a student's notebook runs."""
    nb = nbformat.read(SOLUTIONS / "kd" / "kd.ipynb", as_version=4)
    cell = next(c for c in nb.cells if nbgrader_id(c) == "test_kd_loss")
    return cell.source.split("### BEGIN HIDDEN TESTS")[0]


def _run_visible_test(kd_loss_function):
    import torch.nn.functional as F
    exec(_visible_test_source(), {"torch": torch, "F": F, "kd_loss": kd_loss_function})


@pytest.mark.filterwarnings("ignore::UserWarning")   # the 'mean' mutant makes F.kl_div warn
@pytest.mark.parametrize("trap", ["missing T^2", "reversed KL", "'mean' reduction instead of 'batchmean'"])
def test_the_visible_test_catches_each_trap_the_docstring_names(trap):
    """The notebook's own test_kd_loss fails on each trap kd_loss's docstring warns of (the KL's arguments
    swapped, averaged per number, no T^2), saying what the student's code returned; so does the judge's
    replay of that test (VisibleCheckFailed)."""
    wrong = _mutant_kd_loss(next(m for m in MUTANTS if m.name == trap))
    with pytest.raises(AssertionError, match=r"kd_loss returned 0\.\d{5}, expected 0\.27568"):
        _run_visible_test(wrong)
    with pytest.raises(VisibleCheckFailed, match=r"kd_loss returned 0\.\d{5}, expected 0\.27568"):
        checks.judge_kd_loss(probed(wrong, 0), 0)


def test_the_visible_tests_hand_value_is_the_references():
    _run_visible_test(kd_loss)
    calls = probes.visible_calls()
    assert abs(kd_loss(*calls["differ"]).item() - probes.VISIBLE_SOFT) < 1e-5
    import re
    value, tolerance = re.search(r"abs\(_soft - ([\d.]+)\) < ([\d.e-]+)", _visible_test_source()).groups()
    assert (float(value), float(tolerance)) == (probes.VISIBLE_SOFT, probes.VISIBLE_SOFT_TOLERANCE)


def test_the_red_teams_wrong_kd_loss_passes_the_visible_test_only():
    """The red team's attacks must gain points the hidden check takes away: their wrong kd_loss passes the
    notebook's own asserts."""
    namespace = {}
    exec((REPO / "tests" / "redteam" / "wrong_kd_loss.py").read_text(), namespace)
    _run_visible_test(namespace["kd_loss"])
    with pytest.raises(AssertionError):
        checks.check_kd_loss(namespace["kd_loss"])
