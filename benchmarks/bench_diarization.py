"""Who spoke when, measured: DER and JER (pyannote.metrics, collars 0.25 s and 0 s per side, overlap scored), the
speaker-count error, and the real-time factor and peak RSS of 10, 30 and 60 minutes of audio on 2 CPU threads.

Needs `make demo` first: the conversations are built from the held-out test voices of its synthetic corpus (never
heard in training) with `wavlmrawnet.diarization.conversations` (2-6 speakers, turns of 0.5-20 s, pauses, 10 % of
turns overlapping the previous one), plus one 30-minute, 4-speaker conversation.

Rows (all the tiny preset): the `make demo` model (or `--model` named by `--label`, then each `--compare` model) and
the untrained model (the config of `--model`, random weights, seed 0), each with the count estimated by spectral
clustering (eigengap; over-cluster and merge above 400 windows), by agglomerative clustering (cut at the model's
verification threshold), and given (oracle count, spectral with min = max). Each model embeds each conversation
once; the clusterings share those embeddings.

    python -m benchmarks.bench_diarization --model demo_output/run/final [--markdown-out FILE]
    python -m benchmarks.bench_diarization --model demo_output/run/final --scale-only     # only the RTF / RSS table
    python -m benchmarks.bench_diarization --model IN_DOMAIN/final --label in-domain --corpus HELD_OUT/wav \
        --compare "make demo=demo_output/run/final" --quality-only    # other models, the same conversations

The scale rows each run in a fresh process (`--one-length MINUTES`) so that each peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import child_env, load_note, machine_caption, markdown_table, module_command, publish

REPO = Path(__file__).resolve().parents[1]
THREADS = 2
SHORT_SPEAKERS = (2, 3, 4, 5, 6)
VARIANTS = {  # row suffix -> (clustering, count given?)
    "spectral, count estimated": ("spectral", False),
    "agglomerative, count estimated": ("agglomerative", False),
    "spectral, oracle count": ("spectral", True),
}


def models_to_measure(model: str, label: str, compare: list[str]) -> dict[str, str]:
    """Row name -> model folder: `model` as `label`, then each `--compare NAME=DIR`, in order."""
    models = {label: model}
    for item in compare:
        name, sep, folder = item.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise ValueError(f"--compare takes NAME=DIR, not {item!r}")
        if name.strip() in models or name.strip() == "untrained":
            raise ValueError(f"--compare: the row name {name.strip()!r} is taken")
        models[name.strip()] = folder.strip()
    return models


def build_conversations(corpus: Path, out: Path, minutes: float, long_minutes: float, seed: int) -> list[dict]:
    from wavlmrawnet.diarization.conversations import corpus_voices, plan_turns, write_conversation

    plans = [(count, minutes) for count in SHORT_SPEAKERS] + [(4, long_minutes)]
    conversations = []
    for count, length in plans:
        rng = np.random.default_rng([seed, count, int(length * 60)])
        voices = corpus_voices(corpus, count, rng)
        turns = plan_turns(list(voices), length * 60, rng)
        name = f"conv_{count}spk_{length:g}min"
        wav, rttm = write_conversation(out, name, turns, voices, seed=seed)
        conversations.append({"name": name, "wav": wav, "rttm": rttm, "speakers": count, "minutes": length})
    return conversations


def untrained_copy(model_dir: str, out: Path) -> Path:
    from wavlmrawnet import WavLMRawNetConfig, WavLMRawNetForXVector

    trained = WavLMRawNetForXVector.from_pretrained(model_dir)
    torch.manual_seed(0)
    WavLMRawNetForXVector(WavLMRawNetConfig.from_dict(trained.config.to_dict())).save_pretrained(out)
    return out


def quality(models: dict[str, str], conversations: list[dict]) -> list[dict]:
    from wavlmrawnet.diarization import Diarizer, SpeakerCount, read_rttm, score_diarization

    rows = []
    for model_name, model_dir in models.items():
        diarizer = Diarizer(model_dir, progress=False)
        for conversation in conversations:
            reference = read_rttm(conversation["rttm"])[conversation["name"]]
            analysed = diarizer.analyse(conversation["wav"])
            for variant, (clustering, oracle) in VARIANTS.items():
                count = SpeakerCount.of(conversation["speakers"] if oracle else None, None, None)
                result = diarizer.assign(analysed, count, clustering)
                scores = score_diarization(reference, result.segments, duration=result.duration)
                rows.append({"model": model_name, "variant": variant, "conversation": conversation["name"],
                             "minutes": conversation["minutes"], "speakers": conversation["speakers"],
                             "found": result.num_speakers, **scores})  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
    return rows


def quality_tables(rows: list[dict], long_minutes: float) -> str:
    def cells(subset):
        mean = lambda key: statistics.fmean(r[key] for r in subset)  # noqa: E731
        count_error = statistics.fmean(abs(r["found"] - r["speakers"]) for r in subset)
        rates = [f"{mean(key):.1f}" for key in ("der@0.25", "jer@0.25", "der@0", "jer@0")]
        parts = f"{mean('missed'):.1f} / {mean('false_alarm'):.1f} / {mean('confusion'):.1f}"
        return [*rates, parts, f"{count_error:.2f}"]

    header = ["model (tiny preset)", "clustering", "DER 0.25", "JER 0.25", "DER 0", "JER 0",
              "miss / FA / confusion (0.25)", "count error"]  # fmt: skip
    short = [r for r in rows if r["minutes"] != long_minutes]
    long = [r for r in rows if r["minutes"] == long_minutes]
    keys = list(dict.fromkeys((r["model"], r["variant"]) for r in rows))
    table_short = [[m, v, *cells([r for r in short if (r["model"], r["variant"]) == (m, v)])] for m, v in keys]
    table_long = [[m, v, *cells([r for r in long if (r["model"], r["variant"]) == (m, v)])] for m, v in keys]
    per_count = [["speakers", *(f"{m}, {v}" for m, v in keys)]]
    for count in SHORT_SPEAKERS:
        row = [str(count)]
        for key in keys:
            match = [r for r in short if (r["model"], r["variant"], r["speakers"]) == (*key, count)]
            row.append(f"{statistics.fmean(r['der@0.25'] for r in match):.1f} ({match[0]['found']} found)")
        per_count.append(row)
    minutes = short[0]["minutes"] if short else 0
    return (
        f"### {len(SHORT_SPEAKERS)} conversations of {minutes:g} min (2-6 speakers), mean\n\n"
        + markdown_table(header, table_short)
        + f"\n\n### One {long_minutes:g}-minute conversation, 4 speakers\n\n"
        + markdown_table(header, table_long)
        + "\n\n### DER (collar 0.25 s) by speaker count, and the count found\n\n"
        + markdown_table(per_count[0], per_count[1:])
    )


def one_length(model_dir: str, minutes: float, corpus: Path, out: Path, seed: int) -> dict:
    """Builds one 4-speaker conversation of `minutes`, diarizes it (spectral, count estimated) on THREADS threads in
    this process, and returns the timings, the peak RSS and the scores."""
    from wavlmrawnet.diarization import Diarizer, read_rttm, score_diarization
    from wavlmrawnet.diarization.conversations import corpus_voices, plan_turns, write_conversation

    rng = np.random.default_rng([seed, 4, int(minutes * 60)])
    voices = corpus_voices(corpus, 4, rng)
    name = f"scale_{minutes:g}min"
    wav, rttm = write_conversation(out, name, plan_turns(list(voices), minutes * 60, rng), voices, seed=seed)
    torch.set_num_threads(THREADS)
    diarizer = Diarizer(model_dir)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    result = diarizer(wav)
    seconds = time.perf_counter() - started
    scores = score_diarization(read_rttm(rttm)[name], result.segments, duration=result.duration)
    return {"minutes": minutes, "seconds": seconds, "rtf": seconds / result.duration, "steps": result.seconds,
            "windows": result.num_windows, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_before_mb": rss_before, "found": result.num_speakers, "der": scores["der@0.25"]}  # fmt: skip


def scale_table(rows: list[dict]) -> str:
    header = ["audio", "windows", "wall time", "real-time factor", "read / VAD / embed / cluster (s)",
              "peak RSS", "RSS growth from 10 min", "speakers found (4)", "DER 0.25"]  # fmt: skip
    base = rows[0]["peak_rss_mb"]
    table = [[f"{r['minutes']:g} min", str(r["windows"]), f"{r['seconds']:.0f} s", f"{r['rtf']:.3f}",
              " / ".join(f"{r['steps'][k]:.0f}" for k in ("read", "vad", "embed", "cluster")),
              f"{r['peak_rss_mb']:.0f} MB", f"+{r['peak_rss_mb'] - base:.0f} MB", str(r["found"]), f"{r['der']:.1f}"]
             for r in rows]  # fmt: skip
    return markdown_table(header, table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="demo_output/run/final", help="the make demo model")
    parser.add_argument("--label", default="make demo", help="the row name of --model")
    parser.add_argument(
        "--compare", action="append", default=[], metavar="NAME=DIR", help="another model on the same conversations"
    )
    parser.add_argument("--corpus", default=None, help="held-out voices (default: <model>/../../corpus/test/wav)")
    parser.add_argument("--minutes", type=float, default=3.0, help="length of each 2-6 speaker conversation")
    parser.add_argument("--long-minutes", type=float, default=30.0, help="the long 4-speaker conversation")
    parser.add_argument("--scale-minutes", type=float, nargs="+", default=[10, 30, 60])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale-only", action="store_true")
    parser.add_argument("--quality-only", action="store_true")
    parser.add_argument("--one-length", type=float, help=argparse.SUPPRESS)  # a scale row, in a fresh process
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--markdown-out")
    args = parser.parse_args(argv)
    try:
        named = models_to_measure(args.model, args.label, args.compare)
    except ValueError as error:
        parser.error(str(error))
    corpus = Path(args.corpus or Path(args.model).absolute().parents[1] / "corpus" / "test" / "wav")
    if not corpus.is_dir():
        parser.error(f"no held-out voices at {corpus}: run `make demo` first or pass --corpus")
    if args.one_length:
        print(json.dumps(one_length(args.model, args.one_length, corpus, Path(args.work), args.seed)))
        return 0
    load = os.getloadavg()[0]
    described = ", ".join(f"{name} `{folder}`" for name, folder in named.items())
    sections = [f"Machine: {machine_caption(THREADS)}.", f"Held-out voices: `{corpus}`; models: {described}."]
    with tempfile.TemporaryDirectory(prefix="bench_diarization_") as work:
        work = Path(work)
        if not args.scale_only:
            torch.set_num_threads(THREADS)
            conversations = build_conversations(corpus, work, args.minutes, args.long_minutes, args.seed)
            models = {**named, "untrained": str(untrained_copy(args.model, work / "untrained"))}
            rows = quality(models, conversations)
            sections.append(quality_tables(rows, args.long_minutes))
        if not args.quality_only:
            scale = []
            for minutes in args.scale_minutes:
                options = ["--model", args.model, "--corpus", str(corpus), "--one-length", str(minutes)]
                command = module_command(__spec__.name, *options, "--work", str(work), "--seed", str(args.seed))
                done = subprocess.run(command, capture_output=True, text=True, check=False, env=child_env())
                if done.returncode != 0:
                    raise RuntimeError(f"the {minutes:g}-minute run failed:\n{done.stderr[-3000:]}")
                scale.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(json.dumps(scale[-1]), flush=True)
            sections.append(f"### Scale: the {args.label} model, spectral, count estimated, {THREADS} threads, each "
                            f"length in a fresh process\n\n" + scale_table(scale))  # fmt: skip
    sections.append(load_note(load) + ".")
    publish("\n\n".join(sections) + "\n", args.markdown_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
