"""autograde.preflight: the full profile's notebooks, run for a few batches on fabricated CIFAR-10 and Speech
Commands files in their real on-disk formats, in a copy of the kit (its data/ is where the loaders look).

CIFAR-10 and Speech Commands cannot be downloaded here; tests/fabricate.py writes random data in their formats,
and a sitecustomize.py on the PYTHONPATH (of the preflight and of its notebook kernels) gives torchvision the
fabricated files' md5 sums: the only thing that differs from a real run.
"""
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fabricate import speech_commands_split, write_cifar_checksums_hook, write_fake_cifar, write_speech_commands
from autograde import preflight
from autograde.course import ASSIGNMENTS, REPO
from lib import profile
from lib.data import speech

NOTEBOOKS = [name for names in ASSIGNMENTS.values() for name in names]
ROW = re.compile(r"^\| (\w+) \| (\d+) \| (\d+) \| ([\d.]+|-) \| ([\d.]+) h \| (\d+) s \| (?:(\d+) of (\d+) pass \(\d+ s\))? \|$",
                 re.M)


def copy_kit(root):
    """The parts of the kit the preflight runs, copied to `root` (its data/ without downloaded data sets)."""
    for name in ("lib", "autograde", "solutions", "labs", "data"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns(
            "__pycache__", "artifacts", ".ipynb_checkpoints", "cifar10", "speech_commands"))
    shutil.copy(REPO / "nbgrader_config.py", root / "nbgrader_config.py")
    return root


def run_preflight(kit, *args, pythonpath=()):
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(kit),
           "PYTHONPATH": ":".join(map(str, (kit, *pythonpath))), "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "autograde.preflight", *args], cwd=kit, env=env,
                          capture_output=True, text=True, timeout=1800)


def test_full_profile_preflight_on_fabricated_data(tmp_path, capsys):
    kit = copy_kit(tmp_path / "kit")
    md5 = write_fake_cifar(kit / "data" / "cifar10", n=4)               # 20 training, 4 test images
    write_speech_commands(kit / "data" / "speech_commands", *speech_commands_split(speech.KEYWORDS, (2, 1, 1)))
    hook = write_cifar_checksums_hook(tmp_path / "hook", md5)

    start = time.time()
    result = run_preflight(kit, "--profile", "full", "--batches", "2", "--work", str(tmp_path / "work"),
                           pythonpath=[hook])
    with capsys.disabled():         # the projection table, in the suite's log (CI's too)
        print(f"\npreflight of the full profile on fabricated data, {time.time() - start:.0f} s:\n{result.stdout}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert re.search(r"^device: cpu: .+; torch \d", out, re.M), out
    rows = {m[0]: m for m in ROW.findall(out)}
    assert list(rows) == NOTEBOOKS, out                                   # one row per notebook, in order
    full = {run.notebook: run for run in preflight.runs("full")}
    for name, runs, epochs, per_epoch, hours, seconds, passed, checks in rows.values():
        expected = [run for run in preflight.runs("full") if run.notebook == name]
        assert int(runs) == len(expected) and int(epochs) == sum(run.epochs for run in expected)
        if expected:   # (a quick machine projects under 0.005 h for a notebook: printed as 0.00 h)
            assert float(per_epoch) > 0 and name in full
            assert float(hours) == pytest.approx(int(epochs) * float(per_epoch) / 3600, abs=0.01), (name, out)
        assert int(seconds) > 0
    # The grader's artifact checks ran on every assignment's artifacts (on its last notebook's row).
    assert int(rows["train_prune_model"][7]) == 4 and int(rows["sincnet_quant"][7]) == 3
    assert int(rows["kd"][7]) == 3
    total = re.search(r"^projected wall time of profile 'full' on this device: ([\d.]+) h", out, re.M)
    # each figure is printed rounded to 0.01 h: the rounded rows may sum to 0.005 h per figure from the total
    assert total and float(total[1]) == pytest.approx(sum(float(r[4]) for r in rows.values()),
                                                      abs=0.005 * (len(rows) + 1) + 1e-9)
    # The notebooks ran the full profile: VGG-19 at full width on CIFAR-10, one epoch, on this device.
    executed = (tmp_path / "work" / "slimming" / "sparsity_train.ipynb").read_text()
    assert "profile 'full' on cpu: VGG-19 at width 1.0, 1 epochs, batch 64" in executed
    assert "14 training, 6 validation (held out of the training images) and 4 test images" in executed
    for artifact in ("sparsity_s0.pt", "sparsity_s2_last.pt", "pruned_90.pt", "finetuned_50.pt"):
        assert (tmp_path / "work" / "slimming" / "artifacts" / artifact).is_file()


def test_missing_data_is_named_with_the_download_command(tmp_path):
    kit = copy_kit(tmp_path / "kit")
    result = run_preflight(kit, "--profile", "full", "--work", str(tmp_path / "work"))
    assert result.returncode == 2, result.stdout + result.stderr
    out = result.stdout
    assert f"no data for slimming: CIFAR-10 in {kit / 'data' / 'cifar10'}" in out
    assert f"no data for sincnet_quant: Speech Commands v2 in {kit / 'data' / 'speech_commands'}" in out
    assert "images.loaders('full'); speech.loaders('full')" in out
    for name in NOTEBOOKS:
        assert re.search(rf"^\| {name} \| \d+ \| \d+ \| - \| - \| no data \|", out, re.M), out


def test_the_preflight_override_is_one_epoch_and_no_threshold(monkeypatch):
    monkeypatch.setenv(profile.PREFLIGHT_VARIABLE, "3")
    assert profile.preflight_batches() == 3
    for name in ("quick", "full"):
        table = {section: profile.config(section, name) for section in profile.TABLES[name]}
        assert table["vgg"]["epochs"] == table["slimming"]["finetune_epochs"] == table["sincnet"]["epochs"] == 1
        assert table["sincnet_quant"]["qat"]["epochs"] == table["kd"]["sweep"]["epochs"] == 1
        assert set(table["sincnet_quant"]["thresholds"].values()) == {0.0} and table["kd"]["kd_accuracy"] == 0
        assert table["slimming"]["finetuned_accuracy"] == {"50": 0.0, "90": 0.0}
        assert table["vgg"]["batch_size"] == profile.TABLES[name]["vgg"]["batch_size"]    # the rest as it is
    monkeypatch.setenv(profile.PREFLIGHT_VARIABLE, "many")
    with pytest.raises(ValueError, match="LAB_PREFLIGHT='many': expected a number of batches"):
        profile.config("vgg")
    monkeypatch.delenv(profile.PREFLIGHT_VARIABLE)
    assert profile.config("vgg", "full")["epochs"] == 160


def test_grading_refuses_to_start_in_a_preflight_shell(monkeypatch, capsys, tmp_path):
    """LAB_PREFLIGHT left set in a TA's shell would grade everyone against thresholds of 0: the runner stops."""
    from autograde import cohort
    monkeypatch.setenv("LAB_PREFLIGHT", "3")
    assert cohort.main(["kd", "--course", str(tmp_path), "--no-sandbox"]) == 2
    assert "LAB_PREFLIGHT is set" in capsys.readouterr().err
