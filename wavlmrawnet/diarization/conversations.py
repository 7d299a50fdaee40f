"""Test conversations with their RTTM reference, composed from single-speaker utterances.

Speakers take turns of 0.5-20 s (log-uniform, so most are a few seconds), a turn being the speaker's utterances
joined and cut to length; between turns there is a pause (0.1-1.5 s) or, with `overlap_probability`, the next
speaker starts before the previous one stops (0.2-1 s of overlapped speech). The reference turns are exactly where
each speaker's audio was placed. Utterances come from a VoxCeleb-layout folder (`corpus_voices`: the synthetic
corpus of `make demo`, the Debian voice corpus) or are synthesised (`synthetic_voices`, for tests).

    python -m wavlmrawnet.diarization.conversations --corpus demo_output/corpus/test/wav --speakers 4 \\
        --minutes 30 --out conversations/
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from .segments import Segment, write_rttm

__all__ = ["corpus_voices", "plan_turns", "render", "synthetic_voices", "write_conversation"]

RATE = 16000


def plan_turns(
    speakers: list[str],
    seconds: float,
    rng: np.random.Generator,
    shortest: float = 0.5,
    longest: float = 20.0,
    overlap_probability: float = 0.1,
    pauses: tuple[float, float] = (0.1, 1.5),
) -> list[Segment]:
    """Turns until `seconds` are filled, each speaker other than the previous one, every speaker at least once."""
    if len(speakers) < 1:
        raise ValueError("a conversation needs at least one speaker")
    turns, now, previous = [], 0.0, None
    order = [str(s) for s in rng.permutation(speakers)]  # the first turns introduce every speaker
    while now < seconds or order:
        length = float(np.exp(rng.uniform(np.log(shortest), np.log(longest))))
        if order:
            speaker = order.pop()
        else:
            choices = [s for s in speakers if s != previous] or speakers
            speaker = str(choices[rng.integers(len(choices))])
        start = now
        if turns and len(speakers) > 1 and rng.random() < overlap_probability:
            start = max(turns[-1].start + 0.2, now - float(rng.uniform(0.2, min(1.0, turns[-1].duration / 2))))
        turns.append(Segment(round(start, 3), round(start + length, 3), speaker))
        now = start + length + float(rng.uniform(*pauses))
        previous = speaker
    return turns


def render(turns: list[Segment], voices: dict[str, list], rng: np.random.Generator, rate: int = RATE) -> np.ndarray:
    """The conversation's waveform: each turn is its speaker's utterances (arrays, or paths read at `rate`) in a
    random order, joined and cut to the turn's length, added at the turn's start."""
    from ..audio_io import load_audio

    cache: dict[str, np.ndarray] = {}

    def utterance(item) -> np.ndarray:
        if isinstance(item, np.ndarray):
            return item.astype(np.float32)
        key = os.fspath(item)
        if key not in cache:
            audio = load_audio(key, rate)
            cache[key] = audio / max(float(np.sqrt(np.mean(audio**2))), 1e-4) * 0.05  # about -26 dBFS each
        return cache[key]

    total = int(np.ceil(max(turn.end for turn in turns) * rate)) + 1
    mix = np.zeros(total, dtype=np.float32)
    for turn in turns:
        need, pieces = int(round(turn.duration * rate)), []
        pool = voices[turn.speaker]
        while sum(len(p) for p in pieces) < need:
            pieces.append(utterance(pool[rng.integers(len(pool))]))
        audio = np.concatenate(pieces)[:need]
        first = int(round(turn.start * rate))
        mix[first : first + len(audio)] += audio
    return np.clip(mix, -1.0, 1.0)


def write_conversation(
    out: str | os.PathLike, name: str, turns: list[Segment], voices: dict[str, list], seed: int = 0, rate: int = RATE
) -> tuple[Path, Path]:
    """Writes `<out>/<name>.wav` (16-bit PCM) and its reference `<out>/<name>.rttm`; returns both paths."""
    import soundfile as sf

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    audio = render(turns, voices, np.random.default_rng(seed), rate)
    wav = out / f"{name}.wav"
    sf.write(wav, audio, rate, subtype="PCM_16")
    return wav, write_rttm(out / f"{name}.rttm", sorted(turns, key=lambda t: t.start), name)


def corpus_voices(root: str | os.PathLike, num_speakers: int, rng: np.random.Generator) -> dict[str, list[Path]]:
    """`num_speakers` speakers drawn from a VoxCeleb-layout folder (`<root>/<speaker>/<video>/<utt>.wav`), each with
    its utterance paths."""
    root = Path(root)
    speakers = sorted(p.name for p in root.iterdir() if p.is_dir())
    if len(speakers) < num_speakers:
        raise ValueError(f"{root} holds {len(speakers)} speakers, {num_speakers} were asked for")
    chosen = sorted(rng.choice(speakers, size=num_speakers, replace=False))
    voices = {speaker: sorted((root / speaker).rglob("*.wav")) for speaker in chosen}
    empty = [speaker for speaker, files in voices.items() if not files]
    if empty:
        raise ValueError(f"{root}: no wav file for speaker(s) {', '.join(empty)}")
    return voices


def synthetic_voices(num_speakers: int, seed: int = 0, utterances: int = 3, seconds: float = 3.0, rate: int = RATE):
    """`num_speakers` voices of `wavlmrawnet.synthetic`, each with `utterances` clips of `seconds` (one recording
    channel per speaker, as in one meeting room per person)."""
    from ..synthetic.channel import draw_channel
    from ..synthetic.corpus import synthesize_utterance
    from ..synthetic.voice import draw_session, draw_voice_profile

    voices = {}
    for index in range(num_speakers):
        rng = np.random.default_rng([seed, index])
        profile, session, channel = draw_voice_profile(rng), draw_session(rng), draw_channel(rng, rate)
        clips = [
            synthesize_utterance(profile, session, channel, int(seconds * rate), rate, rng) for _ in range(utterances)
        ]
        voices[f"spk{index + 1}"] = [(clip / max(np.sqrt(np.mean(clip**2)), 1e-4) * 0.05).astype(np.float32)
                                     for clip in clips]  # fmt: skip
    return voices


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Writes test conversations (wav + reference RTTM).")
    parser.add_argument("--corpus", required=True, help="VoxCeleb-layout folder: <speaker>/<video>/<utt>.wav")
    parser.add_argument("--out", required=True)
    parser.add_argument("--speakers", type=int, nargs="+", default=[2, 3, 4, 5, 6])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--overlap", type=float, default=0.1, help="probability that a turn overlaps the last")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for count in args.speakers:
        rng = np.random.default_rng([args.seed, count])
        voices = corpus_voices(args.corpus, count, rng)
        turns = plan_turns(list(voices), args.minutes * 60, rng, overlap_probability=args.overlap)
        name = f"conv{count}spk_{args.minutes:g}min_seed{args.seed}"
        wav, rttm = write_conversation(args.out, name, turns, voices, seed=args.seed)
        print(f"{wav}\t{rttm}\t{len(turns)} turns")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
