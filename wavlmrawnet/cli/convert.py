"""`convert`: a tree of audio files (m4a/AAC, FLAC, ...) to 16 kHz mono 16-bit WAV, in parallel, resumable."""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from .common import EXIT_FAILED_INPUTS, check_writable, report_failures

CONVERT_SUFFIXES = (".m4a", ".mp4", ".aac", ".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif", ".au")


def find_sources(src: Path, suffixes: tuple[str, ...] = CONVERT_SUFFIXES) -> list[Path]:
    """Audio files under `src` (recursively), sorted; `src` may also be one file."""
    if src.is_file():
        return [src]
    if not src.is_dir():
        raise FileNotFoundError(f"{src} does not exist")
    wanted = {s.lower() for s in suffixes}
    return sorted(p for p in src.rglob("*") if p.suffix.lower() in wanted and p.is_file())


def target_for(source: Path, src: Path, dst: Path) -> Path:
    """`dst/<path relative to src>` with a .wav suffix (`dst` itself names the file when `src` is one)."""
    if src.is_file():
        return dst if dst.suffix.lower() == ".wav" else dst / source.with_suffix(".wav").name
    return (dst / source.relative_to(src)).with_suffix(".wav")


def convert_file(source: str, target: str, sampling_rate: int) -> str | None:
    """Decodes `source`, writes `target` atomically (a kill never leaves half a file); returns an error or None."""
    import numpy as np
    import soundfile as sf

    from ..audio_io import load_audio

    try:
        audio = load_audio(source, sampling_rate)
    except ValueError as error:  # AudioDecodingError
        return getattr(error, "reason", None) or str(error)
    if not np.all(np.isfinite(audio)):
        return "the decoded audio holds NaN or Inf samples"
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    partial = f"{target}.{os.getpid()}.partial"
    sf.write(partial, np.clip(audio, -1.0, 1.0), sampling_rate, subtype="PCM_16", format="WAV")
    os.replace(partial, target)
    return None


def cmd_convert(args) -> int:
    from tqdm.auto import tqdm

    src, dst = Path(args.src), Path(args.dst)
    if src.is_file() and dst.suffix.lower() == ".wav":
        check_writable(dst)  # one file to one file
    else:
        check_writable(dst, folder=True)
    if args.errors:
        check_writable(args.errors)
    sources = find_sources(src)
    if not sources:
        raise SystemExit(f"error: no audio files ({', '.join(CONVERT_SUFFIXES)}) under {src}")
    jobs = [(str(s), str(target_for(s, src, dst))) for s in sources]
    outputs = [t for _, t in jobs]
    if len(set(outputs)) != len(outputs):
        clash = next(t for t in outputs if outputs.count(t) > 1)
        raise SystemExit(f"error: two inputs map to the same output {clash} (e.g. a.m4a and a.flac in one folder)")
    todo = [(s, t) for s, t in jobs if not os.path.isfile(t)]  # finished outputs were written atomically: resume
    print(f"{len(jobs)} file(s): {len(jobs) - len(todo)} already converted, {len(todo)} to convert")
    failures = {}
    workers = max(1, args.workers or os.cpu_count() or 1)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        rate = [args.sampling_rate] * len(todo)
        results = pool.map(convert_file, [s for s, _ in todo], [t for _, t in todo], rate, chunksize=8)
        for (source, _), error in tqdm(
            zip(todo, results), total=len(todo), desc="converting", unit="file", disable=args.quiet
        ):
            if error is not None:
                failures[source] = error
    print(f"converted {len(todo) - len(failures)} file(s) into {dst}")
    report_failures(failures, args.errors)
    return EXIT_FAILED_INPUTS if failures else 0


def register(commands: argparse._SubParsersAction) -> None:
    convert = commands.add_parser(
        "convert",
        help="convert an audio tree (m4a/AAC, FLAC, ...) to 16 kHz mono WAV",
        description="Converts every audio file under SRC to DST/<same relative path>.wav (16-bit PCM, mono, "
        "resampled with soxr), in parallel processes. Outputs are written atomically, so a stopped run resumes "
        "where it stopped: existing outputs are kept. m4a/AAC needs PyAV (pip install 'wavlmrawnet[m4a]'). "
        "Every unreadable input is listed; the exit code is 1 if any failed.",
    )
    convert.add_argument("src", help="folder (searched recursively) or one file")
    convert.add_argument("dst", help="output folder (or a .wav path when SRC is one file)")
    convert.add_argument("--sampling-rate", type=int, default=16000, help="output rate in Hz (default 16000)")
    convert.add_argument("--workers", type=int, help="parallel processes (default: the CPU count)")
    convert.add_argument("--errors", help="also write failed inputs and reasons to this TSV file")
    convert.add_argument("--quiet", action="store_true", help="no progress bar")
    convert.set_defaults(run=cmd_convert)
