"""Peak memory of reading audio within `wavlmrawnet.audio_io`'s decode limits: the hostile files are refused from
their header, and the largest accepted inputs are read (and embedded) with bounded memory.

    python -m benchmarks.bench_decode_limits [--model DIR] [--skip-embed] [--markdown-out table.md]

Each row runs in a fresh Python process, which imports wavlmrawnet, reads its peak RSS (`VmHWM`), then runs the
entry point and reads it again: "peak" is the process's peak RSS, "added" what the call added over the imports.
Entry points: `load_audio` (what the feature extractor, the command line, the handler and the Space read through),
and the Space's path end to end (`load_audio` with max_seconds 600, then the embedding pipeline, chunked by
`config.chunk_seconds`) with a `tiny` random-init model (or `--model`). The worst accepted inputs sit exactly at the
limits: 600 s of 48 kHz stereo (57,600,000 samples x channels, `MAX_DECODED_VALUES`), 300 s of 192 kHz mono (the same
count at `MAX_SAMPLE_RATE`, resampled to 16 kHz) and 600 s at 16 kHz (the Space's `--max-seconds`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from benchmarks.common import load_note, machine_caption, markdown_table, publish
from wavlmrawnet import WavLMRawNetConfig, WavLMRawNetForXVector
from wavlmrawnet.audio_io import MAX_CHANNELS, MAX_DECODED_VALUES, MAX_SAMPLE_RATE

CHILD = textwrap.dedent(
    """
    import json, sys, time
    entry, path, model = sys.argv[1], sys.argv[2], sys.argv[3]

    def peak_kib():  # VmHWM: this process's peak RSS (ru_maxrss would carry the parent's peak across exec)
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

    from wavlmrawnet.audio_io import load_audio
    if entry == "space":
        import numpy as np
        from transformers import pipeline
        embed = pipeline("feature-extraction", model=model, trust_remote_code=True, precision="fp32")
        noise = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
        embed({"array": noise, "sampling_rate": 16000}, require_speech=False)  # warm: the model's first forward
    before = peak_kib()
    start = time.perf_counter()
    try:
        waveform = load_audio(path, 16000, max_seconds=600.0 if entry == "space" else None)
        if entry == "space":
            embed({"array": waveform, "sampling_rate": 16000})
        result = f"accepted ({waveform.size / 16000:.0f} s at 16 kHz)"
    except ValueError as error:
        result = "refused: " + str(error).split(" is refused: ", 1)[-1]
    peak = peak_kib()
    print("RESULT" + json.dumps({"result": result, "before_kib": before, "peak_kib": peak,
                                 "seconds": time.perf_counter() - start}))
    """
)


def speech_like(seconds: float, rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A voice-like harmonic signal with syllables (as the tests' `voice_like`), int16, written in one piece."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(140.0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / rate
    audio = (0.1 + 0.9 * np.sin(np.pi * 4 * t) ** 2) * sum(np.sin(k * phase) / k for k in range(1, 8)) * 0.2
    audio = audio + 0.01 * rng.standard_normal(t.size)
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    return np.repeat(pcm[:, None], channels, axis=1) if channels > 1 else pcm


def write_silence_flac(path: Path, seconds: float, rate: int, channels: int) -> Path:
    block = np.zeros((rate * 10, channels), dtype=np.int16)
    total = int(seconds * rate)
    with sf.SoundFile(str(path), "w", rate, channels, subtype="PCM_16", format="FLAC") as out:
        for start in range(0, total, len(block)):
            out.write(block[: min(len(block), total - start)])
    return path


def inputs(folder: Path) -> list[tuple[str, Path]]:
    files = [
        ("FLAC bomb: 599 s x 192 kHz x 8 ch of silence", write_silence_flac(folder / "bomb.flac", 599, 192_000, 8)),
    ]
    sf.write(folder / "rate.wav", np.zeros(1000, np.int16), 655_350)
    files.append(("655,350 Hz WAV", folder / "rate.wav"))
    sf.write(folder / "channels.wav", np.zeros((1000, MAX_CHANNELS + 4), np.int16), 16000)
    files.append((f"{MAX_CHANNELS + 4}-channel WAV", folder / "channels.wav"))
    sf.write(folder / "over.flac", speech_like(601, 48_000, 2), 48_000, format="FLAC")
    files.append(("601 s x 48 kHz x 2 ch FLAC (one second over)", folder / "over.flac"))
    sf.write(folder / "max48.flac", speech_like(600, 48_000, 2), 48_000, format="FLAC")
    files.append(("600 s x 48 kHz x 2 ch FLAC (at MAX_DECODED_VALUES)", folder / "max48.flac"))
    sf.write(folder / "max192.flac", speech_like(300, 192_000, 1), 192_000, format="FLAC")
    files.append(("300 s x 192 kHz x 1 ch FLAC (at MAX_DECODED_VALUES)", folder / "max192.flac"))
    sf.write(folder / "max16.wav", speech_like(600, 16_000, 1), 16_000, subtype="PCM_16")
    files.append(("600 s x 16 kHz mono WAV", folder / "max16.wav"))
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model folder for the Space path (default: a tiny random-init model)")
    parser.add_argument("--skip-embed", action="store_true", help="only load_audio, not the Space path")
    parser.add_argument("--markdown-out")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_decode_limits_") as tmp:
        tmp = Path(tmp)
        model = args.model
        if not model and not args.skip_embed:
            torch.manual_seed(0)
            model = str(tmp / "tiny_model")
            WavLMRawNetForXVector(WavLMRawNetConfig.from_preset("tiny", num_labels=5)).save_pretrained(model)
        for label, path in inputs(tmp):
            entries = ["load_audio"] + ([] if args.skip_embed else ["space"])
            for entry in entries:
                run = subprocess.run(
                    [sys.executable, "-c", CHILD, entry, str(path), model or "-"],
                    capture_output=True,
                    text=True,
                    env={**os.environ, "HF_HUB_OFFLINE": "1"},
                )
                if run.returncode != 0 or "RESULT" not in run.stdout:
                    raise RuntimeError(f"{label} / {entry} failed:\n{run.stderr[-3000:]}")
                out = json.loads(run.stdout.split("RESULT", 1)[1])
                rows.append(
                    [
                        label,
                        f"{path.stat().st_size / 2**20:.1f}",
                        "load_audio" if entry == "load_audio" else "Space path (load + embed)",
                        out["result"][:110],
                        f"{out['peak_kib'] / 1024:.0f}",
                        f"{(out['peak_kib'] - out['before_kib']) / 1024:.0f}",
                        f"{out['seconds']:.1f}",
                    ]
                )
                print(" | ".join(rows[-1]), flush=True)
    header = ["input", "file (MiB)", "entry point", "result", "peak RSS (MiB)", "added (MiB)", "time (s)"]
    report = "\n".join(
        [
            f"{machine_caption()}. Limits: {MAX_SAMPLE_RATE:,} Hz, {MAX_CHANNELS} channels, {MAX_DECODED_VALUES:,} "
            f"samples x channels (`wavlmrawnet/audio_io.py`). Each row a fresh process; peak = `VmHWM`, added = "
            f"peak - peak after the imports (and, on the Space path, the model's load and first forward). "
            f"{load_note(load_before)}.",
            "",
            markdown_table(header, rows),
        ]
    )
    publish(report, args.markdown_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
