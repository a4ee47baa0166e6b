"""Speech data: Google Speech Commands v2 (full profile) and the embedded espeak-ng keywords (quick profile).

Both give the same items, ten keywords as one-second clips, so a model cannot tell which one it gets:

    loaders = speech.loaders()               # {"train", "val", "test"}: DataLoaders of the active profile
    x, y = next(iter(loaders["train"]))      # x (B, 1, 16000) float32 in [-1, 1]: one second at 16 kHz
                                             # y (B,) int64: an index into KEYWORDS
"""
from __future__ import annotations

import functools
import io
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset

from .. import profile as lab_profile      # not "profile": that is the name of loaders()'s argument
from . import check_sha256

if TYPE_CHECKING:
    import numpy.typing as npt

Item = tuple[torch.Tensor, int]   # (wave (1, 16000) float32, label: an index into KEYWORDS)

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SAMPLE_RATE = 16000            # samples per second, as recorded in Speech Commands
CLIP_SAMPLES = 16000           # every item is exactly one second long
KEYWORDS_FILE = lab_profile.DATA_DIR / "keywords" / "keywords.npz"
SUBSETS = ("training", "validation", "testing")          # torchaudio's names for the official splits
SHORT_NAMES = {"train": "training", "val": "validation", "test": "testing"}
MAX_SHIFT = 1600               # training-time random time shift: up to 0.1 s either way
NOISE_KINDS = ("white", "pink", "brown", "hum")        # the background noises of the embedded keywords


def load_wav(path: str | Path) -> torch.Tensor:
    """Decode an audio file with soundfile: a (samples,) float32 tensor in [-1, 1].

    Raises FileNotFoundError if there is no such file, and ValueError if it is not audio or not at 16 kHz
    (resample it first: the models assume 16000 samples per second).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such audio file")
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)     # (samples, channels)
    except RuntimeError as error:                        # what soundfile raises for a file it cannot decode
        raise ValueError(f"{path} is not a readable audio file ({error})") from error
    if rate != SAMPLE_RATE:
        raise ValueError(f"{path} has a sample rate of {rate} Hz, expected {SAMPLE_RATE} Hz; resample it first, "
                         f"e.g. with torchaudio.functional.resample(wave, {rate}, {SAMPLE_RATE})")
    return torch.from_numpy(samples.mean(axis=1))        # several channels are averaged into one


def fix_length(wave: torch.Tensor, length: int = CLIP_SAMPLES) -> torch.Tensor:
    """Pad with zeros or trim, keeping the middle, to exactly `length` samples along the last dimension.

    (..., n) -> (..., length). Centred, because the recordings put the word roughly in the middle:
    trimming a long clip at its end could cut the word, padding a short one at its end moves the word.
    """
    missing = length - wave.shape[-1]
    if missing >= 0:
        return torch.nn.functional.pad(wave, (missing // 2, missing - missing // 2))
    start = -missing // 2
    return wave[..., start:start + length]


def random_shift(wave: torch.Tensor, max_shift: int = MAX_SHIFT) -> torch.Tensor:
    """Move the clip by up to `max_shift` samples left or right, filling the gap with zeros; same shape.

    The augmentation of the Speech Commands reference code (time_shift_ms=100): a keyword spotter should not
    care exactly where in the second the word falls.
    """
    shift = int(torch.randint(-max_shift, max_shift + 1, ()))
    shifted = torch.zeros_like(wave)
    if shift >= 0:
        shifted[..., shift:] = wave[..., :wave.shape[-1] - shift]
    else:
        shifted[..., :shift] = wave[..., -shift:]
    return shifted


def _subset_name(subset: str) -> str:
    """"training", "validation" or "testing" ("train", "val" and "test" are accepted too)."""
    subset = SHORT_NAMES.get(subset, subset)
    if subset not in SUBSETS:
        raise ValueError(f"subset {subset!r} is not a split: expected one of {SUBSETS}")
    return subset


class SpeechCommandsKeywords(Dataset[Item]):
    """Google Speech Commands v2 (Warden, 2018), restricted to the ten KEYWORDS, for the full profile.

    torchaudio downloads and unpacks the archive (2.3 GB) into `root`/SpeechCommands on first use and lists
    the files of the official split: "validation" and "testing" are the files named in validation_list.txt and
    testing_list.txt, "training" is all the others. We decode with soundfile (load_wav), not torchaudio.
    Items: (wave (1, 16000) float32, label int index into KEYWORDS); `augment` adds random_shift.
    """

    def __init__(self, root: str | Path, subset: str, download: bool = True, augment: bool = False) -> None:
        # Imported here: torchaudio takes seconds to import and only the full profile needs it.
        from torchaudio.datasets import SPEECHCOMMANDS
        root = Path(root)
        if download:
            root.mkdir(parents=True, exist_ok=True)
        index = SPEECHCOMMANDS(root, url="speech_commands_v0.02", download=download, subset=_subset_name(subset))
        # get_metadata(n) gives the n-th file's path (relative to root/SpeechCommands) and its word without
        # decoding it: index[n] would decode it with torchaudio's own backend, which we do not use.
        self.files: list[Path] = []
        labels: list[int] = []
        for n in range(len(index)):
            relative_path, _, word, _, _ = index.get_metadata(n)
            if word in KEYWORDS:                          # the other 25 words of the data set are left out
                self.files.append(root / "SpeechCommands" / relative_path)
                labels.append(KEYWORDS.index(word))
        self.labels = torch.tensor(labels, dtype=torch.int64)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Item:
        wave = fix_length(load_wav(self.files[i])).unsqueeze(0)      # (1, 16000); a few clips are shorter
        if self.augment:
            wave = random_shift(wave)
        return wave, int(self.labels[i])


@functools.lru_cache(maxsize=None)
def noise_recording(kind: str, samples: int) -> torch.Tensor:
    """A long synthetic background-noise "recording" of one kind: (samples,) float32.

    kind: "white" (hiss), "pink" (power falling as 1/f: rain, wind), "brown" (1/f^2: rumble) or "hum"
    (50 or 60 Hz mains and its harmonics, with a little hiss). Seeded, so always the same; made once per
    process. The embedded clips cut their one second of noise out of it, as Speech Commands cuts its
    noise out of the long files in _background_noise_.
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}: expected one of {NOISE_KINDS}")
    generator = torch.Generator().manual_seed(NOISE_KINDS.index(kind))
    white = torch.randn(samples, generator=generator)
    if kind == "hum":
        mains = 50.0 if torch.rand((), generator=generator) < 0.5 else 60.0
        harmonics = torch.arange(1, 9).unsqueeze(1)                    # (8, 1): 1st to 8th harmonic
        phases = 2 * torch.pi * torch.rand(8, 1, generator=generator)
        t = torch.arange(samples) / SAMPLE_RATE                         # seconds
        return (torch.sin(2 * torch.pi * mains * harmonics * t + phases) / harmonics).sum(0) + 0.1 * white
    # Coloured noise: shape white noise's spectrum. Nothing below 20 Hz, which a microphone would not pick
    # up and which in a one-second window would only be a slowly wandering offset.
    spectrum = torch.fft.rfft(white)
    hertz = torch.fft.rfftfreq(samples, 1 / SAMPLE_RATE)
    exponent = {"white": 0.0, "pink": 0.5, "brown": 1.0}[kind]        # amplitude ~ 1 / f^exponent
    spectrum = torch.where(hertz < 20, 0, spectrum / hertz.clamp(min=20) ** exponent)
    return torch.fft.irfft(spectrum, n=samples)


@functools.lru_cache(maxsize=2)
def _read_keywords_file(path: Path) -> dict[str, npt.NDArray[Any]]:
    """The arrays of the embedded keywords file, with its FLAC stream decoded into "audio" (int16, all clips).

    Checks the file's sha256 first (once per process) and raises a ValueError naming the file if it changed.
    """
    check_sha256(path)
    with np.load(path) as stored:
        arrays = {name: stored[name] for name in stored.files}
    # All words are stored back to back in one FLAC stream (lossless, about 4x smaller than raw int16).
    arrays["audio"], _ = sf.read(io.BytesIO(arrays.pop("audio_flac").tobytes()), dtype="int16")
    return arrays


class EmbeddedKeywords(Dataset[Item]):
    """The ten KEYWORDS said by espeak-ng voices: the quick profile's offline Speech Commands (2800 clips).

    See data/keywords/README.md: 140 synthetic speakers (accent + voice variant + rate + pitch), each saying
    each keyword twice; speakers are split 98 / 21 / 21 into training / validation / testing (1960 / 420 / 420
    clips), so testing speakers are never heard in training.
    The file (default KEYWORDS_FILE) holds only the trimmed words: clip(i) puts word i into one second with
    its stored time shift, level, noise and signal-to-noise ratio, so a clip is the same every time.
    `augment` moves the word by up to MAX_SHIFT samples at random (for training).
    Items: (wave (1, 16000) float32, label int index into KEYWORDS).
    """

    def __init__(self, subset: str, path: str | Path | None = None, augment: bool = False) -> None:
        data = _read_keywords_file(Path(path or KEYWORDS_FILE))
        keep = np.nonzero(data["split"] == _subset_name(subset))[0]
        self.audio = data["audio"]                       # int16 (all samples,), shared by the three subsets
        self.noise_kinds = [str(kind) for kind in data["noise_kinds"]]
        # One entry per clip of this subset:
        self.start, self.length, self.shift = data["start"][keep], data["length"][keep], data["shift"][keep]
        self.gain_db, self.snr_db = data["gain_db"][keep], data["snr_db"][keep]
        self.noise_kind, self.noise_start = data["noise_kind"][keep], data["noise_start"][keep]
        self.noise_samples = int(data["noise_bank_samples"])          # length of each noise_recording
        self.voices, self.speakers = data["voice"][keep], data["speaker"][keep]     # for analysis, e.g. per voice
        self.labels = torch.from_numpy(data["label"][keep])
        self.augment = augment

    def __len__(self) -> int:
        return len(self.labels)

    def word(self, i: int) -> torch.Tensor:
        """The i-th clip's word as stored, at its stored level: (length,) float32, without noise or padding."""
        samples = self.audio[self.start[i]:self.start[i] + self.length[i]]
        return torch.from_numpy(samples.astype(np.float32) / 32768) * 10 ** (float(self.gain_db[i]) / 20)

    def clip(self, i: int, shift: int | None = None) -> torch.Tensor:
        """The i-th one-second clip: (16000,) float32 in [-1, 1].

        The word starts at sample `shift` (default: the stored one), on background noise at the stored
        signal-to-noise ratio (the word's RMS over the noise's RMS, in dB).
        """
        word = self.word(i)
        shift = int(self.shift[i]) if shift is None else shift
        wave = torch.zeros(CLIP_SAMPLES)
        wave[shift:shift + len(word)] = word
        recording = noise_recording(self.noise_kinds[self.noise_kind[i]], self.noise_samples)
        noise = recording[self.noise_start[i]:self.noise_start[i] + CLIP_SAMPLES]
        # Scale the noise so that RMS(word) / RMS(noise), in dB, is the clip's signal-to-noise ratio.
        noise_rms = word.pow(2).mean().sqrt() / 10 ** (float(self.snr_db[i]) / 20)
        noise = noise * noise_rms / noise.pow(2).mean().sqrt()
        return (wave + noise).clamp(-1, 1)

    def __getitem__(self, i: int) -> Item:
        shift = int(self.shift[i])
        if self.augment:           # move the word, not the clip, so the noise still fills the whole second
            latest = CLIP_SAMPLES - int(self.length[i])
            shift = min(max(shift + int(torch.randint(-MAX_SHIFT, MAX_SHIFT + 1, ())), 0), latest)
        return self.clip(i, shift).unsqueeze(0), int(self.labels[i])


def loaders(profile: str | None = None, batch_size: int | None = None, root: str | Path | None = None,
            download: bool = True, num_workers: int = 0, seed: int = 0) -> dict[str, DataLoader[Item]]:
    """{"train", "val", "test"} DataLoaders of the profile's keyword set; batches (B, 1, 16000), (B,).

    profile: "quick" (EmbeddedKeywords, offline) or "full" (Speech Commands v2, downloaded into `root`,
    default data/speech_commands); None means the active one, lib.profile.name().
    batch_size: None means the profile's sincnet batch size (lib.profile); val and test use batches of 256.
    The train loader reshuffles every epoch from a generator seeded with `seed`, and shifts each word at
    random (torch.manual_seed makes the shifts repeat); val and test give the same clips in the same order.
    """
    profile = profile or lab_profile.name()
    if profile not in lab_profile.PROFILES:
        raise ValueError(f"profile {profile!r} is not a profile: expected one of {lab_profile.PROFILES}")
    batch_size = batch_size or lab_profile.config("sincnet", profile)["batch_size"]
    make: Callable[[str, bool], Dataset[Item]]       # make(subset, augment)
    if profile == "quick":
        make = lambda subset, augment: EmbeddedKeywords(subset, augment=augment)         # noqa: E731
    else:
        root = Path(root or lab_profile.DATA_DIR / "speech_commands")
        make = lambda subset, augment: SpeechCommandsKeywords(root, subset, download, augment)  # noqa: E731
    generator = torch.Generator().manual_seed(seed)
    return {
        "train": DataLoader(make("training", True), batch_size=batch_size, shuffle=True, generator=generator,
                            num_workers=num_workers),
        "val": DataLoader(make("validation", False), batch_size=256, shuffle=False, num_workers=num_workers),
        "test": DataLoader(make("testing", False), batch_size=256, shuffle=False, num_workers=num_workers),
    }
