"""Image data: CIFAR-10 (full profile) and the embedded coloured digits (quick profile), one loader API.

    loaders = images.loaders()          # {"train", "val", "test"}: DataLoaders, batches of
    x, y = next(iter(loaders["train"]))  # x (B, 3, 32, 32) float normalised, y (B,) int64 in 0..9

"val" is held out of the training images (VAL_FRACTION of each class, fixed by VAL_SEED, never augmented):
training selects its checkpoint there, so that "test" stays unseen until the selected model is reported.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from .. import profile as lab_profile      # not "profile": that is the name of loaders()'s argument
from . import check_sha256

if TYPE_CHECKING:
    import numpy.typing as npt
    from torchvision.datasets import CIFAR10

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DIGITS_FILE = lab_profile.DATA_DIR / "digits" / "digits32.npz"
NUM_CLASSES = 10
VAL_FRACTION = 0.1   # of each class's training images: CIFAR-10 5,000 of 50,000; the digits 142 of 1,437
VAL_SEED = 0         # the split never changes with the loaders' seed (which only orders the batches)


def validation_split(labels: npt.ArrayLike, fraction: float = VAL_FRACTION,
                     seed: int = VAL_SEED) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(train indices, val indices) of a training set with these labels: a stratified, fixed hold-out.

    labels: (N,) class of each training image. From each class round(fraction * its count) images go to
    validation, at least one of a class with two or more (so that a tiny data set still has a validation
    split), drawn with a generator seeded by `seed`. Returns two sorted int64 arrays, disjoint, that together
    cover 0..N-1.
    """
    labels = np.asarray(labels)
    rng = np.random.RandomState(seed)
    per_class: list[npt.NDArray[np.int64]] = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        count = max(int(round(fraction * len(members))), 1 if len(members) > 1 else 0)
        per_class.append(members[:count])
    val = np.sort(np.concatenate(per_class))
    return np.setdiff1d(np.arange(len(labels)), val), val


def cifar10(train: bool, root: str | Path | None = None, download: bool = True, augment: bool | None = None) -> CIFAR10:
    """torchvision's CIFAR-10 (train=True: the 50,000 training images, else the 10,000 test images) with
    the network-slimming preprocessing.

    augment (default: train): 4-pixel padded random 32x32 crop and horizontal flip (the augmentation of the
    reference code); every image is normalised with CIFAR_MEAN / CIFAR_STD.
    """
    from torchvision import datasets, transforms
    augment = train if augment is None else augment
    normalize = [transforms.ToTensor(), transforms.Normalize(CIFAR_MEAN, CIFAR_STD)]
    steps = [transforms.Pad(4), transforms.RandomCrop(32), transforms.RandomHorizontalFlip()] if augment else []
    return datasets.CIFAR10(str(root or lab_profile.DATA_DIR / "cifar10"), train=train, download=download,
                            transform=transforms.Compose(steps + normalize))


def cifar10_splits(root: str | Path | None = None, download: bool = True) -> dict[str, Dataset[Any]]:
    """{"train", "val", "test"} datasets of CIFAR-10: train and val split the training images
    (validation_split), only train is augmented."""
    train = cifar10(True, root, download)
    train_idx, val_idx = validation_split(train.targets)
    return {"train": Subset(train, train_idx.tolist()),
            "val": Subset(cifar10(True, root, download=False, augment=False), val_idx.tolist()),
            "test": cifar10(False, root, download)}


class EmbeddedDigits(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """The 1797 scikit-learn digits as coloured 3x32x32 images (data/digits/README.md).

    split: "train" (1295 images), "val" (142, held out of the file's 1437 training images by
    validation_split) or "test" (the file's 360 test images).
    Items are (image (3, 32, 32) float normalised with the train split's per-channel mean/std, label).
    Training images get a random shift of up to 2 pixels (padded crop); no flip, digits are not symmetric.
    """

    def __init__(self, split: str, path: str | Path = DIGITS_FILE) -> None:
        if split not in ("train", "val", "test"):
            raise ValueError(f"EmbeddedDigits split {split!r}: expected 'train', 'val' or 'test'")
        check_sha256(path)
        with np.load(path) as data:
            train_images = torch.from_numpy(data["train_images"]).float() / 255   # (N, 3, 32, 32)
            train_labels = torch.from_numpy(data["train_labels"])
            test_images, test_labels = torch.from_numpy(data["test_images"]).float() / 255, \
                torch.from_numpy(data["test_labels"])
        train_idx, val_idx = (torch.from_numpy(i) for i in validation_split(train_labels.numpy()))
        self.mean = train_images[train_idx].mean(dim=(0, 2, 3)).view(3, 1, 1)
        self.std = train_images[train_idx].std(dim=(0, 2, 3)).view(3, 1, 1)
        if split == "test":
            self.images, self.labels = test_images, test_labels
        else:
            index = train_idx if split == "train" else val_idx
            self.images, self.labels = train_images[index], train_labels[index]
        self.split = split

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = (self.images[i] - self.mean) / self.std
        if self.split == "train":
            padded = torch.nn.functional.pad(image, (2, 2, 2, 2))
            dy, dx = torch.randint(0, 5, (2,)).tolist()
            image = padded[:, dy:dy + 32, dx:dx + 32]
        return image, self.labels[i]


def labels_of(dataset: Dataset[Any]) -> torch.Tensor:
    """(N,) int64 class of every item of `dataset` (EmbeddedDigits, torchvision's CIFAR10, or a Subset of one)."""
    if isinstance(dataset, Subset):
        return labels_of(dataset.dataset)[torch.as_tensor(dataset.indices)]
    # (a Dataset declares neither attribute: getattr reads torchvision's .targets)
    labels = dataset.labels if hasattr(dataset, "labels") else getattr(dataset, "targets")
    return torch.as_tensor(labels)


def class_subset(dataset: Dataset[Any], fraction: float) -> Subset[Any]:
    """A Subset with `fraction` of each class's items (at least one per class), the same ones on every call.

    Stratified, so that a small fraction keeps the classes balanced; the items are drawn by a fixed generator
    (seed 0), independent of the runs' seeds: every run on the subset sees the same images.
    """
    labels = labels_of(dataset)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    keep: list[int] = []
    for c in range(NUM_CLASSES):
        items = order[labels[order] == c]
        keep += items[:max(1, round(fraction * len(items)))].tolist()
    return Subset(dataset, sorted(keep))


def loaders(profile: str | None = None, batch_size: int | None = None, root: str | Path | None = None,
            download: bool = True, seed: int = 0, num_workers: int = 0,
            train_fraction: float = 1.0) -> dict[str, DataLoader[Any]]:
    """{"train", "val", "test"} DataLoaders of the profile's image set (quick: embedded digits, full: CIFAR-10).

    The train loader reshuffles every epoch from a generator seeded with `seed`, so runs repeat; val and
    test are in a fixed order, not augmented. Select checkpoints on "val"; "test" is for the final report.
    train_fraction < 1 trains on that fraction of each class (class_subset); val and test stay whole.
    """
    profile = profile or lab_profile.name()
    batch_size = batch_size or lab_profile.config("vgg", profile)["batch_size"]
    if profile == "quick":
        sets: dict[str, Dataset[Any]] = {split: EmbeddedDigits(split) for split in ("train", "val", "test")}
    else:
        sets = cifar10_splits(root, download)
    if train_fraction < 1:
        sets["train"] = class_subset(sets["train"], train_fraction)
    generator = torch.Generator().manual_seed(seed)
    return {
        "train": DataLoader(sets["train"], batch_size=batch_size, shuffle=True, generator=generator,
                            num_workers=num_workers),
        "val": DataLoader(sets["val"], batch_size=256, shuffle=False, num_workers=num_workers),
        "test": DataLoader(sets["test"], batch_size=256, shuffle=False, num_workers=num_workers),
    }
