"""lib.data.speech: the embedded keywords, fix_length, load_wav, and the Speech Commands loader (offline,
on a tiny directory tree in the real on-disk layout)."""
import hashlib
import re
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from fabricate import FILES, TESTING, VALIDATION, write_speech_commands
from lib.data import speech

SIZES = {"training": 1960, "validation": 420, "testing": 420}      # data/keywords/README.md
SPEAKERS = {"training": 98, "validation": 21, "testing": 21}
CARD = speech.KEYWORDS_FILE.parent / "README.md"


@pytest.fixture(scope="module")
def embedded():
    return {subset: speech.EmbeddedKeywords(subset) for subset in SIZES}


def test_embedded_sizes_match_the_card(embedded):
    card = CARD.read_text()
    for subset, dataset in embedded.items():
        assert len(dataset) == SIZES[subset]
        assert len(set(dataset.speakers.tolist())) == SPEAKERS[subset]
        # The card's table row: | subset | speakers | clips | per keyword |
        row = rf"\|\s*{subset}\s*\|\s*{SPEAKERS[subset]}\s*\|\s*{SIZES[subset]}\s*\|\s*{SIZES[subset] // 10}\s*\|"
        assert re.search(row, card), f"{CARD} has no row for {subset} with these sizes"
    size = speech.KEYWORDS_FILE.stat().st_size
    assert f"{size} bytes" in card and size <= 8_000_000


def test_embedded_items_are_one_second_clips_with_every_keyword(embedded):
    for subset, dataset in embedded.items():
        wave, label = dataset[0]
        assert wave.shape == (1, speech.CLIP_SAMPLES) and wave.dtype == torch.float32
        assert isinstance(label, int) and 0 <= label < len(speech.KEYWORDS)
        counts = torch.bincount(dataset.labels, minlength=len(speech.KEYWORDS))
        assert counts.tolist() == [SIZES[subset] // 10] * 10, "every keyword, equally often"
        waves = torch.stack([dataset[i][0] for i in range(0, len(dataset), 37)])
        assert waves.abs().max() <= 1 and waves.std(dim=-1).min() > 1e-3     # in range, never silent


def test_no_speaker_or_clip_is_in_two_splits(embedded):
    speakers = {subset: set(d.speakers.tolist()) for subset, d in embedded.items()}
    voices = {subset: set(d.voices.tolist()) for subset, d in embedded.items()}
    words = {subset: {hashlib.sha1(d.word(i).numpy().tobytes()).digest() for i in range(len(d))}
             for subset, d in embedded.items()}
    for a, b in (("training", "validation"), ("training", "testing"), ("validation", "testing")):
        assert not speakers[a] & speakers[b]
        assert not voices[a] & voices[b]
        assert not words[a] & words[b]


def test_validation_and_testing_clips_are_fixed_training_clips_are_shifted(embedded):
    test = speech.EmbeddedKeywords("test")                 # short names work too
    assert torch.equal(test[5][0], embedded["testing"][5][0])
    augmented = speech.EmbeddedKeywords("training", augment=True)
    torch.manual_seed(0)
    first = torch.stack([augmented[i][0] for i in range(20)])
    torch.manual_seed(0)
    assert torch.equal(first, torch.stack([augmented[i][0] for i in range(20)]))     # repeatable with the seed
    fixed = torch.stack([embedded["training"][i][0] for i in range(20)])
    assert not torch.equal(first, fixed)


def test_clip_is_the_word_at_its_shift_plus_noise_at_its_snr(embedded):
    dataset = embedded["validation"]
    i = 7
    word, shift = dataset.word(i), int(dataset.shift[i])
    noise = dataset.clip(i) - torch.nn.functional.pad(word, (shift, speech.CLIP_SAMPLES - shift - len(word)))
    snr = 20 * torch.log10(word.pow(2).mean().sqrt() / noise.pow(2).mean().sqrt())
    assert abs(float(snr) - float(dataset.snr_db[i])) < 0.1


def test_noise_recordings_are_seeded_and_unknown_kinds_refused():
    for kind in speech.NOISE_KINDS:
        a, b = speech.noise_recording(kind, 16000), speech.noise_recording.__wrapped__(kind, 16000)
        assert a.shape == (16000,) and torch.equal(a, b)
    with pytest.raises(ValueError, match="unknown noise kind 'pinkish'"):
        speech.noise_recording("pinkish", 16000)


def test_a_changed_keywords_file_is_refused(tmp_path, monkeypatch):
    for name in ("keywords.npz", "SHA256SUMS"):
        shutil.copy(speech.KEYWORDS_FILE.parent / name, tmp_path / name)
    with open(tmp_path / "keywords.npz", "r+b") as f:
        f.seek(5000)
        f.write(b"\x00\x01\x02")
    monkeypatch.setattr(speech, "KEYWORDS_FILE", tmp_path / "keywords.npz")
    with pytest.raises(ValueError, match=r"keywords.npz is corrupt or was changed: expected sha256 [0-9a-f]{64}, "
                                         r"found [0-9a-f]{64}; restore it with `git checkout"):
        speech.EmbeddedKeywords("testing")


def test_an_unknown_subset_or_profile_is_refused():
    with pytest.raises(ValueError, match="subset 'dev' is not a split"):
        speech.EmbeddedKeywords("dev")
    with pytest.raises(ValueError, match="'medium' is not a profile"):
        speech.loaders(profile="medium")


def test_fix_length_pads_and_trims_centred():
    assert speech.fix_length(torch.arange(1.0, 4.0), 6).tolist() == [0, 1, 2, 3, 0, 0]
    assert speech.fix_length(torch.arange(1.0, 5.0), 8).tolist() == [0, 0, 1, 2, 3, 4, 0, 0]
    assert speech.fix_length(torch.arange(10.0), 4).tolist() == [3, 4, 5, 6]
    assert speech.fix_length(torch.arange(9.0), 4).tolist() == [2, 3, 4, 5]
    assert speech.fix_length(torch.ones(2, 1, 10), 16).shape == (2, 1, 16)        # works on batches
    assert speech.fix_length(torch.zeros(20000)).shape == (speech.CLIP_SAMPLES,)
    x = torch.randn(7)
    assert torch.equal(speech.fix_length(x, 7), x)


def test_load_wav_round_trip_and_errors(tmp_path):
    samples = (np.random.default_rng(0).uniform(-0.5, 0.5, 12345) * 32767).astype(np.int16)
    sf.write(tmp_path / "ok.wav", samples, 16000, subtype="PCM_16")
    wave = speech.load_wav(tmp_path / "ok.wav")
    assert wave.shape == (12345,) and wave.dtype == torch.float32
    assert torch.equal(wave, torch.from_numpy(samples.astype(np.float32) / 32768))
    sf.write(tmp_path / "slow.wav", samples, 8000, subtype="PCM_16")
    with pytest.raises(ValueError, match=r"slow.wav has a sample rate of 8000 Hz, expected 16000 Hz"):
        speech.load_wav(tmp_path / "slow.wav")
    (tmp_path / "text.wav").write_text("not audio")
    with pytest.raises(ValueError, match=r"text.wav is not a readable audio file"):
        speech.load_wav(tmp_path / "text.wav")
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        speech.load_wav(tmp_path / "missing.wav")


@pytest.fixture
def speech_commands(tmp_path):
    return write_speech_commands(tmp_path)


def test_speech_commands_honours_the_official_split_lists(speech_commands):
    folder = speech_commands / "SpeechCommands" / "speech_commands_v0.02"
    every = {f"{word}/{name}.wav" for word, names in FILES.items() for name in names}
    expected = {
        "validation": set(VALIDATION),
        "testing": set(TESTING),
        "training": every - set(VALIDATION) - set(TESTING),
    }
    for subset, paths in expected.items():
        dataset = speech.SpeechCommandsKeywords(speech_commands, subset, download=False)
        keyword_paths = {p for p in paths if not p.startswith("bed/")}
        assert {f.relative_to(folder).as_posix() for f in dataset.files} == keyword_paths
        for i in range(len(dataset)):
            wave, label = dataset[i]
            assert wave.shape == (1, speech.CLIP_SAMPLES) and wave.dtype == torch.float32
            assert speech.KEYWORDS[label] == dataset.files[i].parent.name
    # Decoded by soundfile, centred: the 11000-sample recording sits in the middle of the second.
    training = speech.SpeechCommandsKeywords(speech_commands, "training", download=False)
    short = training.files.index(folder / "yes" / "aaa_nohash_1.wav")
    wave = training[short][0][0]
    assert torch.equal(wave[2500:13500], speech.load_wav(training.files[short]))
    assert wave[:2500].abs().max() == 0 and wave[13500:].abs().max() == 0


def test_speech_commands_missing_without_download_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="doesn't exist"):
        speech.SpeechCommandsKeywords(tmp_path, "training", download=False)


def test_full_profile_loaders_on_the_tiny_tree(speech_commands):
    loaders = speech.loaders(profile="full", root=speech_commands, download=False, batch_size=2)
    assert set(loaders) == {"train", "val", "test"}
    assert [len(loaders[k].dataset) for k in ("train", "val", "test")] == [5, 2, 2]
    x, y = next(iter(loaders["train"]))
    assert x.shape == (2, 1, speech.CLIP_SAMPLES) and x.dtype == torch.float32 and y.dtype == torch.int64
    x, y = next(iter(loaders["test"]))
    assert sorted(speech.KEYWORDS[k] for k in y.tolist()) == ["stop", "yes"]


def test_quick_profile_loaders(monkeypatch):
    monkeypatch.setenv("LAB_PROFILE", "quick")
    loaders = speech.loaders()
    x, y = next(iter(loaders["train"]))
    assert x.shape == (64, 1, speech.CLIP_SAMPLES) and y.shape == (64,) and y.dtype == torch.int64
    assert [len(loaders[k].dataset) for k in ("train", "val", "test")] == list(SIZES.values())
    again = speech.loaders(profile="quick", batch_size=64)
    assert torch.equal(next(iter(again["train"]))[1], y)                   # the shuffle is seeded
    assert not torch.equal(next(iter(speech.loaders(profile="quick", seed=1)["train"]))[1], y)
    assert torch.equal(next(iter(loaders["val"]))[0], next(iter(again["val"]))[0])
