"""Noise and room-impulse-response folders for `data.augment`, matched to the evaluation conditions and made from
nothing downloaded: the training side of issue 30's question "does augmentation matched to the conditions shrink the
gaps?".

    python -m benchmarks.augment_folders --corpus demo_output/corpus/train/wav --out demo_output/augment
    python train.py --config configs/demo.yaml --set training.output_dir=demo_output/matched \
        --set data.augment.noise_dir=demo_output/augment/noise --set data.augment.rir_dir=demo_output/augment/rirs ...

- `noise/`: the evaluation noise bank's three families (`wavlmrawnet.evaluation.noise_bank`), drawn with another
  seed and from the *training* speakers: babble of training speakers, music-like tones and the coloured channel
  noises, 8 s clips;
- `rirs/`: generated room impulse responses (`audio_effects.room_impulse_response`), RT60 and direct-to-reverberant
  ratio drawn from the same ranges as the `reverb` condition.
The evaluation's own clips (seed 0, the test speakers) are never written here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import soundfile as sf

from wavlmrawnet.audio_effects import room_impulse_response
from wavlmrawnet.evaluation.noise_bank import NOISE_FAMILIES, NoiseBank, seeded_rng, speakers_of

SAMPLING_RATE = 16000
RT60_RANGE = (0.3, 0.9)  # the `reverb` condition's ranges (docs/robustness.md)
DRR_DB_RANGE = (-3.0, 6.0)


def write_folders(corpus: Path, out: Path, seed: int, clips: int, rirs: int) -> tuple[int, int]:
    """Writes `clips` noise clips per family and `rirs` impulse responses; returns how many of each were written."""
    files = sorted(str(p) for p in corpus.rglob("*.wav"))
    if not files:
        raise FileNotFoundError(f"no .wav files under {corpus}")
    bank = NoiseBank(seed=seed, sampling_rate=SAMPLING_RATE, speakers=speakers_of(files))
    speakers = sorted(set(bank.speakers.values()))
    (out / "noise").mkdir(parents=True, exist_ok=True)
    (out / "rirs").mkdir(parents=True, exist_ok=True)
    written = 0
    for family in NOISE_FAMILIES:
        for index in range(clips):
            rng = seeded_rng(seed, "augment", family, str(index))
            if family == "babble":
                clip = bank.babble(speakers[index % len(speakers)])
            else:
                clip, _ = bank.draw(int(8.0 * SAMPLING_RATE), None, rng)
            sf.write(str(out / "noise" / f"{family}_{index:03d}.wav"), clip, SAMPLING_RATE, subtype="FLOAT")
            written += 1
    for index in range(rirs):
        rng = seeded_rng(seed, "augment", "rir", str(index))
        rir = room_impulse_response(
            float(rng.uniform(*RT60_RANGE)), SAMPLING_RATE, rng, float(rng.uniform(*DRR_DB_RANGE))
        )
        sf.write(str(out / "rirs" / f"rir_{index:03d}.wav"), rir, SAMPLING_RATE, subtype="FLOAT")
    return written, rirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus", required=True, help="training audio (VoxCeleb layout), e.g. demo_output/corpus/train/wav"
    )
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=1, help="not the evaluation's seed (0)")
    parser.add_argument("--clips", type=int, default=20, help="noise clips per family")
    parser.add_argument("--rirs", type=int, default=50)
    args = parser.parse_args()
    noises, rirs = write_folders(Path(args.corpus), Path(args.out), args.seed, args.clips, args.rirs)
    print(f"{noises} noise clips in {Path(args.out) / 'noise'}, {rirs} impulse responses in {Path(args.out) / 'rirs'}")


if __name__ == "__main__":
    main()
