"""lib.data.images and lib.profile: the embedded digits, the CIFAR-10 loader (offline), profile selection."""
import shutil

import pytest
import torch

from fabricate import cifar_checksums, write_fake_cifar
from lib import grading, profile
from lib.data import images


def _keys(images_01):
    """The bytes of each uint8 image: what tells two images apart."""
    return [bytes(img.numpy().tobytes()) for img in (images_01 * 255).round().to(torch.uint8)]


def test_embedded_digits_are_cifar_shaped_with_fixed_disjoint_splits():
    train, val, test = (images.EmbeddedDigits(split) for split in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (1295, 142, 360)     # val: 10% of each class of the 1437
    x, y = test[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= int(y) < 10
    for split in (train, val, test):
        assert sorted(torch.unique(split.labels).tolist()) == list(range(10))
    assert torch.bincount(val.labels).tolist() == [14, 15, 14, 15, 14, 14, 14, 14, 14, 14]   # stratified
    # Normalised with the training split's statistics: about zero mean, unit variance per channel.
    normalised = (train.images - train.mean) / train.std
    assert torch.allclose(normalised.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(normalised.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3)
    # No image is in two splits.
    train_keys, val_keys, test_keys = (set(_keys(split.images)) for split in (train, val, test))
    assert not train_keys & val_keys and not train_keys & test_keys and not val_keys & test_keys
    with pytest.raises(ValueError, match="expected 'train', 'val' or 'test'"):
        images.EmbeddedDigits("valid")


def test_validation_split_is_stratified_fixed_and_disjoint():
    labels = torch.arange(1000) % 10
    train_idx, val_idx = images.validation_split(labels.numpy())
    assert len(val_idx) == 100 and torch.bincount(labels[val_idx]).tolist() == [10] * 10
    assert set(train_idx).isdisjoint(val_idx) and sorted(set(train_idx) | set(val_idx)) == list(range(1000))
    again_train, again_val = images.validation_split(labels.numpy())
    assert (again_train == train_idx).all() and (again_val == val_idx).all()
    assert not (images.validation_split(labels.numpy(), seed=1)[1] == val_idx).all()   # the seed picks them
    tiny = images.validation_split([0, 0, 1, 1, 1, 2])    # 10% of 2 or 3 rounds to 0: still one of each
    assert list(tiny[1]) in ([0, 2], [0, 3], [0, 4], [1, 2], [1, 3], [1, 4]) and len(tiny[0]) == 4


def test_quick_loaders_batches_and_seeded_shuffle():
    first = images.loaders("quick", batch_size=32, seed=1)
    x, y = next(iter(first["train"]))
    assert x.shape == (32, 3, 32, 32) and y.shape == (32,) and y.dtype == torch.int64
    again = images.loaders("quick", batch_size=32, seed=1)
    assert torch.equal(next(iter(again["train"]))[1], y)
    for split in ("val", "test"):                            # fixed batches: no shuffle, no augmentation
        xt, yt = next(iter(first[split]))
        assert torch.equal(xt, next(iter(first[split]))[0])
        other = images.loaders("quick", batch_size=32, seed=2)[split]   # the loaders' seed leaves them alone
        assert torch.equal(xt, next(iter(other))[0]) and torch.equal(yt, next(iter(other))[1])
    assert set(first) == {"train", "val", "test"}


def test_a_changed_data_file_is_refused(tmp_path):
    for name in ("digits32.npz", "SHA256SUMS"):
        shutil.copy(images.DIGITS_FILE.parent / name, tmp_path / name)
    with open(tmp_path / "digits32.npz", "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02")
    with pytest.raises(ValueError, match=r"digits32.npz is corrupt or was changed: expected sha256"):
        images.EmbeddedDigits("train", path=tmp_path / "digits32.npz")


def test_cifar10_loader_offline_on_a_tiny_copy(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10
    md5 = write_fake_cifar(tmp_path)
    # torchvision verifies each file's md5 against the real data set's: point it at our tiny files'.
    for name, value in cifar_checksums(md5).items():
        monkeypatch.setattr(CIFAR10, name, value)
    loaders = images.loaders("full", batch_size=8, root=tmp_path, download=True)   # verified, nothing fetched
    train_set, val_set = loaders["train"].dataset, loaders["val"].dataset
    # The 100 training images split into train and val (10% of each class), disjoint; test is the test file's.
    assert len(train_set) + len(val_set) == 100 and len(val_set) == 10 and len(loaders["test"].dataset) == 20
    assert set(train_set.indices).isdisjoint(val_set.indices)
    assert list(val_set.indices) == list(images.validation_split(train_set.dataset.targets)[1])
    # Validation images are only normalised, like the test images: the training file's pixels, no crop or flip.
    i = val_set.indices[0]
    raw = torch.from_numpy(val_set.dataset.data[i]).permute(2, 0, 1).float() / 255
    expected = (raw - torch.tensor(images.CIFAR_MEAN).view(3, 1, 1)) / torch.tensor(images.CIFAR_STD).view(3, 1, 1)
    assert torch.allclose(val_set[0][0], expected, atol=1e-5) and torch.equal(val_set[0][0], val_set[0][0])
    x, y = next(iter(loaders["train"]))
    assert x.shape == (8, 3, 32, 32) and y.dtype == torch.int64
    # Test images are only normalised: pixel 0 of image 0 equals (value/255 - mean) / std.
    raw = loaders["test"].dataset.data[0, 0, 0, 0] / 255
    assert loaders["test"].dataset[0][0][0, 0, 0].item() == pytest.approx((raw - images.CIFAR_MEAN[0]) / images.CIFAR_STD[0], abs=1e-5)
    # Train images are augmented: padded crops and flips vary between two reads of the same image.
    assert any(not torch.equal(train_set[0][0], train_set[0][0]) for _ in range(10))


def test_profile_selection(monkeypatch):
    monkeypatch.delenv("LAB_PROFILE", raising=False)
    assert profile.name() == "quick"
    monkeypatch.setenv("LAB_PROFILE", "FULL")
    assert profile.name() == "full" and profile.config("vgg")["epochs"] == 160
    monkeypatch.setenv("LAB_PROFILE", "fast")
    with pytest.raises(ValueError, match="LAB_PROFILE='fast' is not a profile: expected one of quick, full"):
        profile.name()
    hp = profile.config("vgg", "quick")
    hp["epochs"] = -1                                      # a copy: the table is not changed
    assert profile.config("vgg", "quick")["epochs"] > 0
    with pytest.raises(KeyError, match="no section 'nope'"):
        profile.config("nope", "quick")
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    assert not grading.active()
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert grading.active()
    assert profile.device().type in ("cpu", "cuda", "mps")


def test_full_profile_has_the_reference_vgg_hyperparameters():
    hp = profile.config("vgg", "full")
    assert hp == dict(width=1.0, epochs=160, batch_size=64, lr=0.1, momentum=0.9, weight_decay=1e-4,
                      milestones=(0.5, 0.75))
