"""One voice's utterances: planned (text, rate, pitch, length), synthesised, cut at a pause, passed through a random
channel and written as 16 kHz wav files."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .synthesizers import SynthesisError, SynthesisRequest, Synthesizer
from .text import make_text
from .voices import Voice

SAMPLING_RATE = 16000
_MAX_ATTEMPTS = 3  # synthesis attempts per utterance, the text getting longer each time
_WORDS_PER_SECOND = 3.2  # rough speaking rate used to size the text (it is then cut to length)


@dataclass(frozen=True)
class UtterancePlan:
    """Everything decided about one utterance before synthesis."""

    speaker: str
    video: str
    relative_path: str  # <speaker>/<video>/<nnnnn>.wav, relative to the split's wav folder
    text: str
    rate: float  # speaking-rate factor (1 = the synthesiser's default); planned within 0.85-1.16
    pitch: float  # pitch shift in [-1, 1] (0 = default); planned within +-0.2
    target_seconds: float  # the utterance is at most this long
    lead_seconds: float  # silence before the speech
    tail_seconds: float  # silence after it


def _tokens_for(seconds: float) -> int:
    return int(math.ceil(seconds * _WORDS_PER_SECOND * 1.25)) + 2


def plan_voice(
    voice: Voice,
    num_utterances: int,
    num_videos: int,
    min_seconds: float,
    max_seconds: float,
    rng: np.random.Generator,
    video_prefix: str = "",
) -> list[UtterancePlan]:
    """The utterances of one voice: texts, rates, pitches and lengths, grouped into ``num_videos`` sessions.

    Each session (video) has its own rate and pitch offset; utterances vary a little around it.
    """
    if num_utterances < max(2, num_videos) or num_videos < 1:
        raise ValueError(
            f"need num_videos >= 1 and num_utterances >= max(2, num_videos), got {num_utterances} utterances, "
            f"{num_videos} videos"
        )
    plans = []
    for video_index, indices in enumerate(np.array_split(np.arange(num_utterances), num_videos)):
        video = f"{video_prefix}s{video_index + 1:02d}"
        session_rate = rng.uniform(0.9, 1.1)
        session_pitch = rng.uniform(-0.15, 0.15)
        for number in range(1, len(indices) + 1):
            target = float(rng.uniform(min_seconds, max_seconds))
            lead, tail = (float(x) for x in rng.uniform(0.05, 0.3, size=2) * min(1.0, min_seconds / 3.0))
            plans.append(
                UtterancePlan(
                    speaker=voice.speaker,
                    video=video,
                    relative_path=f"{voice.speaker}/{video}/{number:05d}.wav",
                    text=make_text(voice.language, _tokens_for(target), rng),
                    rate=float(session_rate * rng.uniform(0.95, 1.05)),
                    pitch=float(session_pitch + rng.uniform(-0.05, 0.05)),
                    target_seconds=target,
                    lead_seconds=lead,
                    tail_seconds=tail,
                )
            )
    return plans


def to_mono_16k(samples: np.ndarray, sampling_rate: int) -> np.ndarray:
    """float64 mono at 16 kHz (soxr), with clear errors for empty, non-finite or silent audio."""
    audio = np.asarray(samples)
    if audio.dtype.kind in "iu":
        audio = audio.astype(np.float64) / float(np.iinfo(audio.dtype).max)
    audio = audio.astype(np.float64)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if audio.ndim != 1 or audio.size == 0:
        raise SynthesisError(f"the synthesiser returned no audio (shape {audio.shape})")
    if not np.isfinite(audio).all():
        raise SynthesisError("the synthesiser returned NaN or infinite samples")
    if float(np.max(np.abs(audio))) < 1e-4:
        raise SynthesisError("the synthesiser returned silence")
    if sampling_rate != SAMPLING_RATE:
        audio = soxr.resample(audio, sampling_rate, SAMPLING_RATE, quality="HQ")
    return audio


def _frame_rms(audio: np.ndarray, frame: int) -> np.ndarray:
    usable = len(audio) // frame * frame
    return np.sqrt(np.mean(audio[:usable].reshape(-1, frame) ** 2, axis=1) + 1e-20)


def trim_silence(audio: np.ndarray, sampling_rate: int, threshold_db: float = -40.0) -> np.ndarray:
    """``audio`` from its first to its last 20 ms frame within ``threshold_db`` of the loudest (50 ms margins)."""
    frame = sampling_rate // 50
    rms = _frame_rms(audio, frame)
    if rms.size == 0:
        return audio
    active = np.flatnonzero(rms >= rms.max() * 10 ** (threshold_db / 20))
    margin = sampling_rate // 20
    start = max(0, active[0] * frame - margin)
    stop = min(len(audio), (active[-1] + 1) * frame + margin)
    return audio[start:stop]


def cut_at_pause(audio: np.ndarray, sampling_rate: int, max_seconds: float, min_seconds: float) -> np.ndarray:
    """``audio`` cut to at most ``max_seconds`` at its quietest 20 ms frame in the last second before that point
    (not before ``min_seconds``), with a 10 ms fade-out. Shorter audio is returned unchanged."""
    limit = int(max_seconds * sampling_rate)
    if len(audio) <= limit:
        return audio
    frame = sampling_rate // 50
    first = int(max(min_seconds, max_seconds - 1.0) * sampling_rate) // frame
    last = limit // frame  # frames [first, last) end at or before the limit
    if last <= first:
        cut = limit
    else:
        rms = _frame_rms(audio[: last * frame], frame)[first:last]
        cut = (first + int(np.argmin(rms)) + 1) * frame
    out = audio[:cut].copy()
    fade = min(len(out), sampling_rate // 100)
    out[len(out) - fade :] *= np.linspace(1.0, 0.0, fade)
    return out


def apply_random_channel(speech: np.ndarray, sampling_rate: int, rng: np.random.Generator):
    """``speech`` through a random recording channel (EQ and band limits, reverb 30% of the time, additive
    noise at 5-30 dB SNR, random level; peaks <= 0.95). Returns ``(audio, ChannelParams)``.

    This is the project's own channel model (``wavlmrawnet.synthetic.channel``: ``draw_channel`` / ``apply_channel``).
    """
    from wavlmrawnet.synthetic.channel import apply_channel, draw_channel

    channel = draw_channel(rng, sampling_rate)
    return apply_channel(speech, channel, sampling_rate, rng), channel


def render_voice(
    voice: Voice,
    plans: Sequence[UtterancePlan],
    synthesize: Synthesizer,
    rng: np.random.Generator,
    min_seconds: float,
) -> list[tuple[UtterancePlan, np.ndarray, dict]]:
    """Synthesise, cut, pad and pass through a channel every planned utterance of ``voice``, in memory.

    An utterance shorter than it needs to be is synthesised again with more text (up to 3 attempts).
    Returns ``(plan, 16 kHz audio, metadata)`` per utterance; raises SynthesisError with the reason otherwise.
    """
    texts = [plan.text for plan in plans]
    speech: list[np.ndarray | None] = [None] * len(plans)
    pending = list(range(len(plans)))
    shortest = {}
    for attempt in range(_MAX_ATTEMPTS):
        requests = [SynthesisRequest(texts[i], plans[i].rate, plans[i].pitch) for i in pending]
        results = synthesize(voice, requests)
        if len(results) != len(requests):
            raise SynthesisError(f"the synthesiser returned {len(results)} results for {len(requests)} requests")
        still_short = []
        for i, (samples, rate) in zip(pending, results):
            plan = plans[i]
            audio = trim_silence(to_mono_16k(samples, rate), SAMPLING_RATE)
            room = plan.target_seconds - plan.lead_seconds - plan.tail_seconds
            needed = max(min_seconds - plan.lead_seconds - plan.tail_seconds, 0.2)
            seconds = len(audio) / SAMPLING_RATE
            if seconds >= needed:
                speech[i] = cut_at_pause(audio, SAMPLING_RATE, room, needed)
            else:
                shortest[i] = (seconds, len(texts[i].split()))
                texts[i] += " " + make_text(voice.language, _tokens_for(plan.target_seconds) * (attempt + 1), rng)
                still_short.append(i)
        pending = still_short
        if not pending:
            break
    if pending:
        seconds, words = min(shortest[i] for i in pending)
        raise SynthesisError(
            f"{len(pending)} of {len(plans)} utterances stayed shorter than {min_seconds} s after {_MAX_ATTEMPTS} "
            f"attempts with ever longer text (e.g. {words} words gave {seconds:.2f} s of speech); the synthesiser "
            f"may not read this language's text"
        )
    rendered = []
    for plan, text, audio in zip(plans, texts, speech):
        lead = np.zeros(round(plan.lead_seconds * SAMPLING_RATE))
        tail = np.zeros(round(plan.tail_seconds * SAMPLING_RATE))
        mixed, channel = apply_random_channel(np.concatenate([lead, audio, tail]), SAMPLING_RATE, rng)
        meta = {
            "text": text,
            "rate": round(plan.rate, 4),
            "pitch": round(plan.pitch, 4),
            "seconds": round(len(mixed) / SAMPLING_RATE, 3),
            **{f"channel_{k}": v for k, v in asdict(channel).items()},
        }
        rendered.append((plan, mixed, meta))
    return rendered


def write_voice(
    voice: Voice,
    plans: Sequence[UtterancePlan],
    wav_dir: str | os.PathLike,
    synthesize: Synthesizer,
    rng: np.random.Generator,
    min_seconds: float,
    split: str = "",
) -> list[dict]:
    """Render ``voice`` (see render_voice) and write ``<wav_dir>/<speaker>/<video>/<nnnnn>.wav`` (16 kHz mono
    PCM-16). Nothing is written unless every utterance succeeded. Returns one metadata row per file."""
    rendered = render_voice(voice, plans, synthesize, rng, min_seconds)
    wav_dir = Path(wav_dir)
    written: list[Path] = []
    rows = []
    try:
        for plan, audio, meta in rendered:
            path = wav_dir / plan.relative_path
            if path.exists():
                raise FileExistsError(f"{path} already exists (two voices planned the same file)")
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(path), audio, SAMPLING_RATE, subtype="PCM_16")
            written.append(path)
            rows.append(
                {
                    "split": split,
                    "path": plan.relative_path,
                    "speaker": plan.speaker,
                    "video": plan.video,
                    "engine": voice.engine,
                    "voice": voice.name,
                    "language": voice.language,
                    "gender": voice.gender,
                    "package": voice.package,
                    **meta,
                }
            )
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return rows
