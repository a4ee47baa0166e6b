"""Image data: CIFAR-10 (full profile) and the embedded coloured digits (quick profile), one loader API.

    loaders = images.loaders()          # {"train": DataLoader, "test": DataLoader}, batches of
    x, y = next(iter(loaders["train"]))  # x (B, 3, 32, 32) float normalised, y (B,) int64 in 0..9
"""
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from .. import profile as lab_profile      # not "profile": that is the name of loaders()'s argument
from . import check_sha256

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DIGITS_FILE = lab_profile.DATA_DIR / "digits" / "digits32.npz"
NUM_CLASSES = 10


def cifar10(train, root=None, download=True):
    """torchvision's CIFAR-10 with the network-slimming preprocessing.

    Train: 4-pixel padded random 32x32 crop and horizontal flip (the augmentation of the reference code);
    both splits normalised with CIFAR_MEAN / CIFAR_STD.
    """
    from torchvision import datasets, transforms
    normalize = [transforms.ToTensor(), transforms.Normalize(CIFAR_MEAN, CIFAR_STD)]
    augment = [transforms.Pad(4), transforms.RandomCrop(32), transforms.RandomHorizontalFlip()] if train else []
    return datasets.CIFAR10(str(root or lab_profile.DATA_DIR / "cifar10"), train=train, download=download,
                            transform=transforms.Compose(augment + normalize))


class EmbeddedDigits(Dataset):
    """The 1797 scikit-learn digits as coloured 3x32x32 images (data/digits/README.md): 1437 train, 360 test.

    Items are (image (3, 32, 32) float normalised with the training set's per-channel mean/std, label).
    Training images get a random shift of up to 2 pixels (padded crop); no flip, digits are not symmetric.
    """

    def __init__(self, train, path=DIGITS_FILE):
        check_sha256(path)
        split = "train" if train else "test"
        with np.load(path) as data:
            self.images = torch.from_numpy(data[f"{split}_images"]).float() / 255   # (N, 3, 32, 32)
            self.labels = torch.from_numpy(data[f"{split}_labels"])
            train_images = torch.from_numpy(data["train_images"]).float() / 255
        self.mean = train_images.mean(dim=(0, 2, 3)).view(3, 1, 1)
        self.std = train_images.std(dim=(0, 2, 3)).view(3, 1, 1)
        self.train = train

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        image = (self.images[i] - self.mean) / self.std
        if self.train:
            padded = torch.nn.functional.pad(image, (2, 2, 2, 2))
            dy, dx = torch.randint(0, 5, (2,)).tolist()
            image = padded[:, dy:dy + 32, dx:dx + 32]
        return image, self.labels[i]


def labels_of(dataset):
    """(N,) int64 class of every item of `dataset` (an EmbeddedDigits or torchvision's CIFAR10)."""
    labels = dataset.labels if hasattr(dataset, "labels") else dataset.targets
    return torch.as_tensor(labels)


def class_subset(dataset, fraction):
    """A Subset with `fraction` of each class's items (at least one per class), the same ones on every call.

    Stratified, so that a small fraction keeps the classes balanced; the items are drawn by a fixed generator
    (seed 0), independent of the runs' seeds: every run on the subset sees the same images.
    """
    labels = labels_of(dataset)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    keep = []
    for c in range(NUM_CLASSES):
        items = order[labels[order] == c]
        keep += items[:max(1, round(fraction * len(items)))].tolist()
    return Subset(dataset, sorted(keep))


def loaders(profile=None, batch_size=None, root=None, download=True, seed=0, num_workers=0, train_fraction=1.0):
    """{"train", "test"} DataLoaders of the profile's image set (quick: embedded digits, full: CIFAR-10).

    The train loader reshuffles every epoch from a generator seeded with `seed`, so runs repeat.
    train_fraction < 1 trains on that fraction of each class (class_subset); the test split stays whole.
    """
    profile = profile or lab_profile.name()
    batch_size = batch_size or lab_profile.config("vgg", profile)["batch_size"]
    if profile == "quick":
        train_set, test_set = EmbeddedDigits(train=True), EmbeddedDigits(train=False)
    else:
        train_set, test_set = cifar10(True, root, download), cifar10(False, root, download)
    if train_fraction < 1:
        train_set = class_subset(train_set, train_fraction)
    generator = torch.Generator().manual_seed(seed)
    return {
        "train": DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=generator,
                            num_workers=num_workers),
        "test": DataLoader(test_set, batch_size=256, shuffle=False, num_workers=num_workers),
    }
