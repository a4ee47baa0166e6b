"""Build data/keywords/keywords.npz, the quick profile's stand-in for Speech Commands, with espeak-ng.

The ten keywords of the Speech Commands task (yes no up down left right on off stop go) are synthesized by
espeak-ng for many "speakers". A speaker is an accent (an English voice, or another language's voice reading
respelled words, which gives a foreign accent) combined with a voice variant (+m3, +f2, +croak, +whisper ...),
plus its own speaking rate and pitch. Every speaker says every keyword TAKES times, each take with a slightly
different rate and pitch and, sometimes, the intonation of "!" or "?".

Speakers, not clips, are split into training/validation/testing (70/15/15, seeded), as in Speech Commands: the
testing speakers are never heard in training.

Only the clean, trimmed speech is stored (16 kHz, 9-bit resolution, all clips in one FLAC stream): noise does
not compress, so instead each clip gets stored parameters, drawn here with a fixed seed, from which the loader
(lib/data/speech.py) builds the same 1-second clip every time: where the word starts in the second (the time
shift), the speech level, the kind of background noise, where its second starts in the loader's 30-second noise
recording of that kind (as Speech Commands cuts its noise from the long files in _background_noise_) and the
signal-to-noise ratio.

    python data/keywords/make_keywords.py      # rewrites keywords.npz and SHA256SUMS (needs espeak-ng, ~2 min)

The output is byte-identical from run to run with the same espeak-ng (1.51 made the committed file).
"""
import hashlib
import io
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

HERE = Path(__file__).resolve().parent
OUT = HERE / "keywords.npz"
SEED = 0

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SAMPLE_RATE = 16000            # what the loader gives out, as Speech Commands
CLIP_SAMPLES = 16000           # one second
ESPEAK_RATE = 22050            # what espeak-ng writes

# English accents of espeak-ng: they read the keywords as written.
ENGLISH = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
           "en-029", "en-us-nyc")
# Other languages read the keywords respelled in their own orthography (or as phonemes, [[...]]), so they say
# the English word with that language's sounds, a foreign accent. Checked with `espeak-ng -q -x -v LANG WORD`:
# spelled as in English, several of them switch to their English voice, which would defeat the purpose.
RESPELLED = {
    "de": ("jess", "noh", "app", "daun", "left", "reit", "onn", "off", "stopp", "goh"),
    "nl": ("jes", "noo", "ap", "daun", "left", "rait", "on", "of", "stop", "go"),
    "es": ("ies", "nou", "ap", "daun", "left", "rait", "on", "of", "estop", "gou"),
    "it": ("ies", "nou", "ap", "daun", "left", "rrait", "on", "off", "stop", "gou"),
    "fr-fr": ("yesse", "nô", "eupe", "[[d'awn]]", "lefte", "[[r'ajt]]", "onne", "offe", "stoppe", "gô"),
    "pl": ("jes", "nou", "ap", "dałn", "left", "rajt", "on", "of", "stop", "gou"),
    "pt-br": ("iés", "nou", "áp", "dáun", "léft", "ráit", "ón", "óf", "stóp", "gôu"),
    "sv": ("jess", "nåo", "app", "daon", "lefft", "rajt", "ån", "åff", "ståpp", "gåo"),
    "ru": ("йес", "ноу", "ап", "даун", "лефт", "райт", "он", "офф", "стоп", "гоу"),
    "hi": ("येस", "नो", "अप", "डाउन", "लेफ़्ट", "राइट", "ऑन", "ऑफ़", "स्टॉप", "गो"),
    "fi": ("jes", "nou", "ap", "daun", "left", "rait", "on", "off", "stop", "gou"),
    "cs": ("jes", "nou", "ap", "daun", "left", "rajt", "on", "of", "stop", "gou"),
}
# Voice variants (files in espeak-ng-data/voices/!v) that still sound like a person: pitch, formants,
# roughness, breathiness. Left out: robotic and echo effects (robosoft*, UniRobot, anikaRobot, Demonic, Tweaky).
VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "croak", "whisper", "whisperf", "klatt", "klatt2", "klatt3",
    "Alex", "Alicia", "Andy", "Annie", "Denis", "Diogo", "Gene", "Henrique", "Hugo", "Lee", "Mario",
    "Michael", "Mike", "Nguyen", "adam", "anika", "aunty", "belinda", "benjamin", "boris", "caleb", "david",
    "ed", "edward", "grandma", "grandpa", "gustave", "iven3", "john", "kaukovalta", "linda", "max", "michel",
    "miguel", "norbert", "pablo", "paul", "quincy", "rob", "robert", "sandro", "shelby", "steph", "travis",
    "victor", "zac",
)
N_SPEAKERS = 140               # as many as fit in the 8 MB budget (see the printed size)
ENGLISH_SHARE = 0.6            # of the speakers; the rest have a foreign accent
TAKES = 2                      # utterances of each keyword per speaker
SPLITS = (("training", 0.70), ("validation", 0.15), ("testing", 0.15))     # the names torchaudio uses

STEP = 128                     # stored resolution: int16 with the 7 low bits zero, i.e. 9 bits (FLAC drops them)
PEAK = 0.9                     # every stored word is scaled to this peak before quantization
NOISE_KINDS = ("white", "pink", "brown", "hum")    # synthesized by the loader, see lib/data/speech.py
NOISE_BANK_SAMPLES = 30 * SAMPLE_RATE                # length of the loader's noise of each kind
SNR_DB = (5.0, 35.0)           # speech-to-noise ratio, uniform
GAIN_DB = (-18.0, 0.0)         # speech level relative to PEAK, uniform


def espeak(voice, text, speed, pitch, amplitude=50):
    """espeak-ng's rendering of `text` as float32 samples at 22050 Hz."""
    command = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-a", str(amplitude), "--stdout", text]
    wav = subprocess.run(command, check=True, capture_output=True).stdout
    samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    assert rate == ESPEAK_RATE, (voice, rate)
    return samples


def synthesize(voice, text, speed, pitch):
    """One word, resampled to 16 kHz, trimmed to the speech, scaled to PEAK and quantized: int16 (samples,)."""
    amplitude = 50
    samples = espeak(voice, text, speed, pitch, amplitude)
    while np.abs(samples).max() > 0.99:        # clipped inside espeak-ng: say it again, softer
        amplitude //= 2
        samples = espeak(voice, text, speed, pitch, amplitude)
    speech = AF.resample(torch.from_numpy(samples), ESPEAK_RATE, SAMPLE_RATE).numpy()
    # espeak-ng pads the word with digital silence; keep everything within 60 dB of the loudest 10 ms frame
    # (word-final /s/ and /f/ are quiet) plus 10 ms either side.
    frames = speech[: len(speech) // 160 * 160].reshape(-1, 160)
    rms = np.sqrt((frames ** 2).mean(axis=1))
    active = np.nonzero(rms > rms.max() * 1e-3)[0]
    start, stop = max(active[0] - 1, 0) * 160, min(active[-1] + 2, len(frames)) * 160
    speech = speech[start:stop] * (PEAK / np.abs(speech[start:stop]).max())
    assert len(speech) <= CLIP_SAMPLES, (voice, text, speed, len(speech))
    return (np.round(speech * 32768 / STEP) * STEP).clip(-32768, 32767).astype(np.int16)


def choose_speakers(rng):
    """N_SPEAKERS distinct (voice, variant) pairs, ENGLISH_SHARE of them with an English accent."""
    english = [(a, v) for a in ENGLISH for v in VARIANTS]
    foreign = [(a, v) for a in RESPELLED for v in VARIANTS]
    n_english = round(N_SPEAKERS * ENGLISH_SHARE)
    picks = [english[i] for i in rng.choice(len(english), n_english, replace=False)]
    picks += [foreign[i] for i in rng.choice(len(foreign), N_SPEAKERS - n_english, replace=False)]
    return [picks[i] for i in rng.permutation(len(picks))]       # shuffled: the split takes them in order


def make(seed=SEED):
    rng = np.random.default_rng(seed)
    speakers = choose_speakers(rng)
    bounds = np.round(np.cumsum([f for _, f in SPLITS]) * len(speakers))    # speaker index bounds
    rows, pieces = [], []
    for s, (accent, variant) in enumerate(speakers):
        split = SPLITS[int(np.searchsorted(bounds, s, side="right"))][0]
        base_speed, base_pitch = rng.integers(130, 200), rng.integers(25, 76)    # this speaker's habits
        texts = KEYWORDS if accent in ENGLISH else RESPELLED[accent]
        for label, text in enumerate(texts):
            for take in range(TAKES):
                speed = int(np.clip(base_speed * rng.uniform(0.9, 1.1), 110, 240))
                pitch = int(np.clip(base_pitch + rng.integers(-6, 7), 0, 99))
                punct = rng.choice(["", "!", "?"], p=[0.6, 0.2, 0.2])
                speech = synthesize(f"{accent}+{variant}", text + punct, speed, pitch)
                pieces.append(speech)
                rows.append(dict(
                    label=label, split=split, speaker=s, voice=f"{accent}+{variant}", text=text + punct,
                    speed=speed, pitch=pitch, length=len(speech),
                    shift=int(rng.integers(0, CLIP_SAMPLES - len(speech) + 1)),
                    gain_db=rng.uniform(*GAIN_DB), noise_kind=int(rng.integers(len(NOISE_KINDS))),
                    noise_start=int(rng.integers(0, NOISE_BANK_SAMPLES - CLIP_SAMPLES + 1)),
                    snr_db=rng.uniform(*SNR_DB)))
        print(f"speaker {s + 1}/{len(speakers)} {accent}+{variant} ({split})", flush=True)

    flac = io.BytesIO()          # all words back to back in one FLAC stream: far less overhead than one file each
    sf.write(flac, np.concatenate(pieces), SAMPLE_RATE, format="FLAC", subtype="PCM_16", compression_level=1.0)
    lengths = np.array([r["length"] for r in rows], dtype=np.int64)
    column = lambda key, dtype: np.array([r[key] for r in rows], dtype=dtype)   # noqa: E731
    return {
        "keywords": np.array(KEYWORDS),
        "noise_kinds": np.array(NOISE_KINDS),
        "noise_bank_samples": np.array(NOISE_BANK_SAMPLES, dtype=np.int64),
        "audio_flac": np.frombuffer(flac.getvalue(), dtype=np.uint8),
        "start": np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
        "length": lengths,
        "label": column("label", np.int64),
        "split": column("split", "<U10"),
        "speaker": column("speaker", np.int32),
        "voice": column("voice", "<U32"),
        "text": column("text", "<U16"),
        "speed": column("speed", np.int16),
        "pitch": column("pitch", np.int16),
        "shift": column("shift", np.int64),
        "gain_db": column("gain_db", np.float32),
        "noise_kind": column("noise_kind", np.int8),
        "noise_start": column("noise_start", np.int64),
        "snr_db": column("snr_db", np.float32),
    }


def save_npz(path, arrays):
    """np.savez_compressed, but byte-identical from run to run (numpy stamps each member with the time)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


if __name__ == "__main__":
    torch.set_num_threads(1)
    old = (HERE / "SHA256SUMS").read_text().split()[0] if (HERE / "SHA256SUMS").exists() else None
    save_npz(OUT, make())
    digest = hashlib.sha256(OUT.read_bytes()).hexdigest()
    (HERE / "SHA256SUMS").write_text(f"{digest}  {OUT.name}\n")
    with np.load(OUT) as data:
        splits, labels = data["split"], data["label"]
        seconds = data["length"].sum() / SAMPLE_RATE
        for name, _ in SPLITS:
            print(f"{name:10s} {np.sum(splits == name):5d} clips, "
                  f"{len(set(data['speaker'][splits == name].tolist()))} speakers, "
                  f"per keyword {np.bincount(labels[splits == name], minlength=len(KEYWORDS)).tolist()}")
    print(f"{len(splits)} clips, {seconds:.0f} s of speech, {OUT.stat().st_size} bytes, sha256 {digest}"
          + ("" if old in (None, digest) else f" (was {old})"))
