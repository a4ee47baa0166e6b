"""lib.train and lib.checkpoint: hook order, history round trip, determinism, grading-mode loading, errors."""
import json
import zipfile

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lib import train
from lib.checkpoint import CheckpointError, load_checkpoint, load_into, load_model, save_checkpoint
from lib.models import VGG

HP = dict(epochs=2, lr=0.05, momentum=0.9, weight_decay=1e-4, milestones=(0.5, 0.75))
CFG = [4, 'M', 8, 'M', 8, 'M', 8, 'M']    # 32x32 -> 2x2 before the head, like VGG-19


def tiny_loaders(n=48):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = (x[:, 0].mean(dim=(1, 2)) > 0).long()        # a learnable rule
    data = TensorDataset(x, y)
    return {"train": DataLoader(data, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0)),
            "val": DataLoader(data, batch_size=16), "test": DataLoader(data, batch_size=16)}


class Untouchable:
    """A loader that fails the test when anything iterates over it (fit must never look at the test split)."""

    def __len__(self):
        return 1

    def __iter__(self):
        raise AssertionError("fit() read the test split")


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return VGG(CFG, num_classes=2)


def test_after_backward_runs_between_backward_and_step(monkeypatch):
    events = []
    model = tiny_model()
    real_step = torch.optim.SGD.step

    def step(self, *args, **kwargs):
        events.append("step")
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", step)

    def hook(m):
        assert all(p.grad is not None for p in m.parameters()), "hook ran before backward"
        events.append("hook")

    train.fit(model, tiny_loaders(), dict(HP, epochs=1), after_backward=hook, progress=False)
    assert events == ["hook", "step"] * 3                      # 48 samples / batch 16, every batch


def test_fit_records_history_and_saves_best_checkpoint(tmp_path, capsys):
    model = tiny_model()
    history = train.fit(model, tiny_loaders(), dict(HP, note="run A"), save_path=tmp_path / "run.pt", progress=False)
    out = capsys.readouterr().out
    assert "Epoch: 1 |train loss: " in out and "|validation accuracy: " in out and "|learning rate: 5.0e-02" in out
    assert len(history) == 2 and history["epoch"] == [1, 2]
    assert set(history.records[0]) >= {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
                                       "train_time", "val_time"}
    assert history["lr"] == pytest.approx([0.05, 0.005])       # x0.1 at 50% of 2 epochs
    saved = train.History.load(tmp_path / "run.json")
    assert saved.records == history.records and saved.config["note"] == "run A"
    assert saved.config["milestones"] == [0.5, 0.75]           # JSON round trip of the tuple
    meta = load_checkpoint(tmp_path / "run.pt")["meta"]
    assert meta["epoch"] == history.best["epoch"] and meta["val_accuracy"] == history.best["val_accuracy"]
    # The model ends holding the best epoch's weights, i.e. the checkpoint.
    reloaded = tiny_model(seed=1)
    load_into(reloaded, tmp_path / "run.pt")
    for a, b in zip(model.state_dict().values(), reloaded.state_dict().values()):
        assert torch.equal(a, b)


def test_fit_refuses_loaders_without_a_validation_split():
    loaders = tiny_loaders()
    del loaders["val"]                        # train + test only: selecting on test is what fit must refuse
    with pytest.raises(ValueError, match=r"selects the best epoch on loaders\['val'\].*\['test', 'train'\]"):
        train.fit(tiny_model(), loaders, HP, progress=False)


def test_fit_selects_the_checkpoint_on_validation_and_never_reads_test(tmp_path):
    """Validation and test disagree on the best epoch: the validation labels are the rule's opposite, so the
    epoch best on validation is the worst on the rule the test images follow. fit keeps the epoch of the best
    validation accuracy, and never reads loaders["test"] (the rule's accuracy is recorded by a metric here)."""
    loaders = tiny_loaders()
    x, y = loaders["val"].dataset.tensors
    loaders["val"] = DataLoader(TensorDataset(x, 1 - y), batch_size=16)
    rule = DataLoader(TensorDataset(x, y), batch_size=16)
    loaders["test"] = Untouchable()
    history = train.fit(tiny_model(), loaders, dict(HP, epochs=6), save_path=tmp_path / "run.pt", progress=False,
                        epoch_metrics={"rule_accuracy": lambda m: train.evaluate(m, rule, progress=False)[1]})
    by_val = max(history.records, key=lambda r: r["val_accuracy"])["epoch"]
    by_rule = max(history.records, key=lambda r: r["rule_accuracy"])["epoch"]
    assert by_val != by_rule                                  # the case where the split chosen on matters
    assert load_checkpoint(tmp_path / "run.pt")["meta"]["epoch"] == by_val == history.best["epoch"]


def test_fit_is_deterministic_under_a_seed():
    first = train.fit(tiny_model(), tiny_loaders(), HP, progress=False)
    second = train.fit(tiny_model(), tiny_loaders(), HP, progress=False)
    assert first["train_loss"] == second["train_loss"] and first["val_accuracy"] == second["val_accuracy"]


def test_runs_sharing_loaders_see_the_same_batches():
    """A notebook trains several runs from one `loaders` dict: each run starts from the seed's data order."""
    loaders = tiny_loaders()
    first = train.fit(tiny_model(), loaders, HP, progress=False)
    second = train.fit(tiny_model(), loaders, HP, progress=False)
    assert first["train_loss"] == second["train_loss"]


def student_run(monkeypatch, student, tmp_path):
    """One student's run as their notebook makes it: seed_everything(0), a fresh model, fit(seed=0)."""
    monkeypatch.delenv("LAB_SEED", raising=False)
    monkeypatch.setenv("LAB_STUDENT", student)
    train.seed_everything(0)
    model = VGG(CFG, num_classes=2)
    initial = model.feature[0].weight.detach().clone()
    history = train.fit(model, tiny_loaders(), HP, save_path=tmp_path / student / "run.pt", progress=False)
    return initial, history


def test_two_students_start_from_other_weights_and_batches_and_each_repeats(monkeypatch, tmp_path):
    """Seeded from each student's id: two honest students' checkpoints differ (the cohort's similarity pass
    would call identical runs copies), while one student's runs repeat exactly; the seed is in the history."""
    ada, ada_again, dee = (student_run(monkeypatch, s, tmp_path / str(i)) for i, s in enumerate(("ada", "ada", "dee")))
    assert torch.equal(ada[0], ada_again[0]) and ada[1]["train_loss"] == ada_again[1]["train_loss"]
    assert not torch.equal(ada[0], dee[0]) and ada[1]["train_loss"] != dee[1]["train_loss"]
    monkeypatch.setenv("LAB_STUDENT", "ada")
    saved = train.History.load(tmp_path / "0" / "ada" / "run.json")
    assert saved.seed == ada[1].seed == train.student_seed() != 0
    monkeypatch.setenv("LAB_SEED", "0")                 # the kit's builds: what the answer keys quote
    assert train.student_seed() == 0
    monkeypatch.setenv("LAB_SEED", "zero")
    with pytest.raises(ValueError, match="LAB_SEED='zero': expected an integer"):
        train.student_seed()


def test_a_one_epoch_run_trains_at_the_full_learning_rate():
    history = train.fit(tiny_model(), tiny_loaders(), dict(HP, epochs=1), progress=False)
    assert history["lr"] == [HP["lr"]]          # the 50% milestone of 1 epoch is epoch 0: not applied


def test_grading_never_overwrites_submitted_artifacts(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "run.pt", tiny_model(seed=0))
    (tmp_path / "run.json").write_text('{"config": {}, "records": []}')
    submitted = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    train.fit(tiny_model(seed=1), tiny_loaders(), dict(HP, epochs=1), save_path=tmp_path / "run.pt",
              save_last=True, progress=False)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name in submitted} == submitted
    assert (tmp_path / "run_last.pt").is_file()                 # what was missing is still written


def test_fit_or_load_loads_matching_artifacts_when_grading(tmp_path, monkeypatch, capsys):
    trained = tiny_model()
    train.fit(trained, tiny_loaders(), HP, save_path=tmp_path / "run.pt", progress=False)
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")

    def no_training(*args, **kwargs):
        raise AssertionError("grading must not retrain when the artifacts match")

    monkeypatch.setattr(train, "fit", no_training)
    fresh = tiny_model(seed=3)
    history = train.fit_or_load(fresh, tiny_loaders(), HP, tmp_path / "run.pt")
    assert len(history) == 2 and "Loaded" in capsys.readouterr().out
    assert torch.equal(fresh.classifier.weight.cpu(), trained.classifier.weight.cpu())


def test_fit_or_load_falls_back_to_a_short_run_on_other_config(tmp_path, monkeypatch, capsys):
    train.fit(tiny_model(), tiny_loaders(), HP, save_path=tmp_path / "run.pt", progress=False)
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    history = train.fit_or_load(tiny_model(), tiny_loaders(), dict(HP, lr=0.01, epochs=5), tmp_path / "run.pt")
    assert len(history) == train.FALLBACK_EPOCHS
    assert "was trained with" in capsys.readouterr().out


def test_fit_or_load_trains_when_not_grading(tmp_path, monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    history = train.fit_or_load(tiny_model(), tiny_loaders(), HP, tmp_path / "run.pt", progress=False)
    assert len(history) == 2 and (tmp_path / "run.json").exists()


def test_checkpoint_of_another_cfg_gives_a_clear_error(tmp_path):
    save_checkpoint(tmp_path / "pruned.pt", VGG([2, 'M', 8, 'M', 8, 'M', 8, 'M'], num_classes=2))
    with pytest.raises(CheckpointError, match=r"pruned.pt was saved from a model with cfg \[2, 'M'.*load_model"):
        load_into(tiny_model(), tmp_path / "pruned.pt")
    model, meta = load_model(tmp_path / "pruned.pt", VGG, num_classes=2)
    assert model.cfg[0] == 2 and meta == {}


def test_unreadable_or_foreign_checkpoints_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="expected a dict with keys cfg"):
        load_checkpoint(tmp_path / "other.pt")

    class Payload:                                             # a pickle that would run code when loaded
        def __reduce__(self):
            return (print, ("pwned",))
    torch.save({"cfg": [1], "state_dict": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")


def test_a_compressed_checkpoint_is_refused_before_it_is_unpacked(tmp_path):
    """A decompression bomb: 16 KB of deflated zip that torch.load would unpack into a 16 MB tensor (and
    1,000 times any size). torch.save never compresses, so lib.checkpoint refuses it unread."""
    save_checkpoint(tmp_path / "plain.pt", tiny_model())
    torch.save({"cfg": [1], "state_dict": {"w": torch.zeros(4_000_000)}, "meta": {}}, tmp_path / "zeros.pt")
    with zipfile.ZipFile(tmp_path / "zeros.pt") as plain, \
            zipfile.ZipFile(tmp_path / "bomb.pt", "w", zipfile.ZIP_DEFLATED) as bomb:
        for name in plain.namelist():
            bomb.writestr(name, plain.read(name))
    assert (tmp_path / "bomb.pt").stat().st_size < 100_000
    assert torch.load(tmp_path / "bomb.pt", weights_only=True)["state_dict"]["w"].numel() == 4_000_000
    with pytest.raises(CheckpointError, match="bomb.pt: its records are compressed"):
        load_checkpoint(tmp_path / "bomb.pt")
    assert load_checkpoint(tmp_path / "plain.pt")["cfg"] == list(tiny_model().cfg)


def test_a_tensor_larger_than_its_storage_is_refused(tmp_path):
    """A 1.4 KB checkpoint whose tensor is a stride-0 view of 4 bytes, 10^9 elements long: the first copy of it
    (a sketch, a distance, a .double()) would take gigabytes of the grader's memory. Refused on loading; a view
    into a larger storage (a slice, as a state_dict may hold) still loads."""
    torch.save({"cfg": [1], "state_dict": {"w": torch.zeros(1).expand(10**9)}, "meta": {}}, tmp_path / "view.pt")
    assert (tmp_path / "view.pt").stat().st_size < 2000
    with pytest.raises(CheckpointError, match=r"view.pt: holds a tensor of shape \(1000000000,\) on 4 bytes"):
        load_checkpoint(tmp_path / "view.pt")
    torch.save({"cfg": [1], "state_dict": {"w": torch.arange(10.0)[2:5]}, "meta": {}}, tmp_path / "slice.pt")
    assert load_checkpoint(tmp_path / "slice.pt")["state_dict"]["w"].tolist() == [2.0, 3.0, 4.0]


def test_a_cfg_that_does_not_fit_the_weights_is_refused_before_it_is_built(tmp_path):
    # A hostile checkpoint: a few bytes of weights, a cfg for a network of ~10^12 values (terabytes).
    torch.save({"cfg": [200_000] * 16, "state_dict": {"w": torch.zeros(3)}, "meta": {}}, tmp_path / "huge.pt")
    with pytest.raises(CheckpointError, match=r"huge.pt: its cfg .* makes a VGG of [\d,]+ values, but the "
                                              r"checkpoint stores 3"):
        load_model(tmp_path / "huge.pt", VGG)
    torch.save({"cfg": ["x"], "state_dict": {}, "meta": {}}, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match=r"odd.pt: its cfg \['x'\] does not build a VGG"):
        load_model(tmp_path / "odd.pt", VGG)


def test_history_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        train.History.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text(json.dumps({"records": []}))
    with pytest.raises(ValueError, match="bad.json: not a training history"):
        train.History.load(tmp_path / "bad.json")


def test_distillation_step_freezes_the_teacher():
    teacher, student = tiny_model(0), tiny_model(1)
    teacher.train()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    calls = []

    def loss_fn(s, t, y, T, alpha):
        calls.append((T, alpha, t.requires_grad))
        return torch.nn.functional.mse_loss(s, t)

    train.fit(student, tiny_loaders(), dict(HP, epochs=1), step=train.distillation_step(teacher, loss_fn, 4, 0.9),
              progress=False)
    assert calls[0] == (4, 0.9, False)
    assert all(not p.requires_grad for p in teacher.parameters()) and not teacher.training
    for k, v in teacher.state_dict().items():                  # BN running statistics untouched too
        assert torch.equal(v, before[k]), k


def test_epoch_metrics_are_recorded_from_the_model_as_each_epoch_ended(tmp_path):
    """fit(..., epoch_metrics={name: f}): each record holds f(model) of that epoch; the last record's value
    is that of the last epoch's weights (_last.pt), not of the best epoch's the model ends with."""
    def first_weight(model):
        return float(next(model.parameters()).flatten()[0])

    history = train.fit(tiny_model(), tiny_loaders(), HP, save_path=tmp_path / "run.pt", save_last=True,
                        epoch_metrics={"first_weight": first_weight}, progress=False)
    assert len(set(history["first_weight"])) == len(history)       # one value per epoch, as training moved it
    last, _ = load_model(tmp_path / "run_last.pt", VGG, num_classes=2)
    assert history.records[-1]["first_weight"] == first_weight(last)
    assert "sparsity" not in history.records[0]                      # no lab's metric unless asked for


# ------------------------------------------------------------- which epoch a run keeps; sinc learning rate

def spiky_records():
    """A QAT-like validation curve: a spike at epoch 3, a calmer end after the lr drops."""
    curve = [40.0, 55.0, 80.0, 52.0, 60.0, 62.0, 63.0, 61.0]
    return [dict(epoch=i + 1, val_accuracy=v) for i, v in enumerate(curve)]


def test_kept_record_follows_the_select_rule():
    records = spiky_records()
    assert train.kept_record(records, "best")["epoch"] == 3          # the spike
    assert train.kept_record(records, "last")["epoch"] == 8          # the settled end
    assert train.kept_record(records)["epoch"] == 3                  # default: best validation, as before
    assert train.History({"select": "last"}, records).kept["epoch"] == 8
    assert train.History({}, records).kept["epoch"] == 3
    with pytest.raises(ValueError, match="'best', 'last' or 'smoothed'"):
        train.kept_record(records, "test")


def test_kept_record_smoothed_keeps_the_end_of_the_best_window():
    """Means of 3 epochs, ending at epochs 3..8: 58.3, 62.3, 64.0, 58.0, 61.7, 62.0: epoch 5's window wins."""
    records = spiky_records()
    assert train.kept_record(records, "smoothed")["epoch"] == 5
    assert train.kept_record(records[:2], "smoothed")["epoch"] == 2              # fewer epochs than the window
    steady = [dict(epoch=i + 1, val_accuracy=v) for i, v in enumerate([50.0, 90.0, 50.0, 70.0, 72.0, 71.0])]
    assert train.kept_record(steady, "best")["epoch"] == 2                      # one lucky epoch
    assert train.kept_record(steady, "smoothed")["epoch"] == 6                  # 71.0: the steady end wins


def test_fit_with_select_smoothed_saves_the_kept_epoch(tmp_path):
    model = tiny_model()
    history = train.fit(model, tiny_loaders(), dict(HP, epochs=5, select="smoothed"),
                        save_path=tmp_path / "run.pt", progress=False)
    meta = load_checkpoint(tmp_path / "run.pt")["meta"]
    assert meta["epoch"] == history.kept["epoch"] == train.kept_record(history.records, "smoothed")["epoch"]


def test_fit_with_select_last_keeps_the_last_epoch(tmp_path):
    model = tiny_model()
    history = train.fit(model, tiny_loaders(), dict(HP, epochs=3, select="last"), save_path=tmp_path / "run.pt",
                        progress=False)
    meta = load_checkpoint(tmp_path / "run.pt")["meta"]
    assert meta["epoch"] == history.kept["epoch"] == 3
    reloaded = tiny_model(seed=1)
    load_into(reloaded, tmp_path / "run.pt")
    for a, b in zip(model.state_dict().values(), reloaded.state_dict().values()):
        assert torch.equal(a, b)                                       # the model ends holding that epoch


def test_param_groups_give_the_sinc_band_edges_their_own_lr():
    from lib.models import SincNet
    from lib.models.quant import quantize_sincnet
    for model in (SincNet(width=0.25), quantize_sincnet(SincNet(width=0.25), lambda x, bits, lo, hi: x,
                                                                 lambda w, bits, clip_std=None: w.abs().max())):
        sinc = model.front[0]
        rest, bands = train.param_groups(model, dict(HP, sinc_lr=123.0))
        assert [id(p) for p in bands["params"]] == [id(sinc.low_hz_), id(sinc.band_hz_)]
        assert bands["lr"] == 123.0 and bands["weight_decay"] == 0.0    # decay would pull the edges to 0 Hz
        assert len(rest["params"]) + 2 == len(list(model.parameters()))
        assert len(train.param_groups(model, HP)) == 1                   # without sinc_lr: one lr for all
