"""Fabricated full-profile data sets in their real on-disk formats, for tests that cannot download them.

    md5 = write_fake_cifar(root)                  # root/cifar-10-batches-py/: torchvision's pickled batches
    write_speech_commands(root, FILES, VALIDATION, TESTING)   # root/SpeechCommands/speech_commands_v0.02/...
    write_cifar_checksums_hook(folder, md5)       # folder/sitecustomize.py: torchvision accepts those batches

The images and sounds are random: loaders, models and notebooks run on them exactly as on the real files,
but nothing learns anything.
"""
import hashlib
import pickle

import numpy as np
import soundfile as sf

from lib.data import images

# A tiny Speech Commands v2 in torchaudio's on-disk layout:
# <root>/SpeechCommands/speech_commands_v0.02/<word>/<speaker>_nohash_<n>.wav, plus the two split lists.
FILES = {
    "yes": ["aaa_nohash_0", "aaa_nohash_1", "bbb_nohash_0", "ccc_nohash_0"],
    "stop": ["aaa_nohash_0", "ddd_nohash_0", "eee_nohash_0"],
    "go": ["bbb_nohash_0", "fff_nohash_0"],
    "bed": ["aaa_nohash_0", "ggg_nohash_0"],               # not a keyword
}
VALIDATION = ["yes/bbb_nohash_0.wav", "go/bbb_nohash_0.wav", "bed/ggg_nohash_0.wav"]
TESTING = ["yes/ccc_nohash_0.wav", "stop/eee_nohash_0.wav"]


def write_fake_cifar(root, n=20):
    """A tiny CIFAR-10 in torchvision's on-disk format: cifar-10-batches-py/ with pickled batches.

    n images per batch file (5 training batches and the test batch). Returns {file name: md5}, the checksums
    torchvision must be given instead of the real data set's (see write_cifar_checksums_hook).
    """
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, size=n).tolist()}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(images.CIFAR_CLASSES)}, f)
    return {name: hashlib.md5((folder / name).read_bytes()).hexdigest() for name in names + ["batches.meta"]}


def cifar_checksums(md5):
    """{attribute of torchvision's CIFAR10: value} that make it verify the files of write_fake_cifar(...) = md5."""
    return {"train_list": [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)],
            "test_list": [["test_batch", md5["test_batch"]]],
            "meta": {"filename": "batches.meta", "key": "label_names", "md5": md5["batches.meta"]}}


def write_cifar_checksums_hook(folder, md5):
    """Write folder/sitecustomize.py, which points torchvision's CIFAR-10 checksums at the fabricated files.

    torchvision checks every CIFAR-10 file against the real data set's md5 and refuses others. In this process
    a test monkeypatches CIFAR10 (cifar_checksums); a notebook kernel or a command started with `folder` on its
    PYTHONPATH imports this file at startup instead. Returns `folder`.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "# Written by tests/fabricate.py: CIFAR-10 checksums of fabricated test data (never in a real run).\n"
        "from torchvision.datasets import CIFAR10\n"
        f"for _name, _value in {cifar_checksums(md5)!r}.items():\n"
        "    setattr(CIFAR10, _name, _value)\n")
    return folder


def speech_commands_split(words, per_word=(3, 1, 1)):
    """(files, validation, testing) for write_speech_commands: each word said by per_word (training, validation,
    testing) speakers, one clip each; the speakers of the three splits differ, as in the real data set."""
    files, validation, testing = {}, [], []
    for word in words:
        names = [f"s{word}{k:03d}_nohash_0" for k in range(sum(per_word))]
        files[word] = names
        train, val = per_word[0], per_word[0] + per_word[1]
        validation += [f"{word}/{name}.wav" for name in names[train:val]]
        testing += [f"{word}/{name}.wav" for name in names[val:]]
    return files, validation, testing


def write_speech_commands(root, files=FILES, validation=VALIDATION, testing=TESTING):
    """Speech Commands v2 in torchaudio's layout under root/SpeechCommands/speech_commands_v0.02: one 16 kHz
    16-bit WAV of noise per file ({word: [file stems]}), every other one shorter than a second, a
    _background_noise_ folder, and validation_list.txt / testing_list.txt naming `validation` and `testing`.
    Returns root."""
    folder = root / "SpeechCommands" / "speech_commands_v0.02"
    rng = np.random.default_rng(0)
    for word, names in files.items():
        (folder / word).mkdir(parents=True)
        for k, name in enumerate(names):
            # Most recordings are one second, a few are shorter (fix_length pads them).
            n = 16000 if k % 2 == 0 else 11000
            sf.write(folder / word / f"{name}.wav", (rng.uniform(-0.3, 0.3, n) * 32767).astype(np.int16), 16000,
                     subtype="PCM_16")
    (folder / "_background_noise_").mkdir()
    sf.write(folder / "_background_noise_" / "white_noise.wav", np.zeros(48000, np.int16), 16000, subtype="PCM_16")
    (folder / "validation_list.txt").write_text("\n".join(validation) + "\n")
    (folder / "testing_list.txt").write_text("\n".join(testing) + "\n")
    return root
