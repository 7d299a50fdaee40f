"""`diarize`: who spoke when in each recording, as RTTM and/or JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import (
    EXIT_FAILED_INPUTS,
    add_runtime_options,
    check_writable,
    collect_audio,
    load,
    report_failures,
)


def rttm_file_ids(files: list[str]) -> dict[str, str]:
    """Each recording's RTTM file id, its file stem (spaces as "_", which would split RTTM's fields): the name of its
    `<id>.rttm` under --rttm-out and the second column of its lines, as pyannote and Kaldi-style tools name a
    recording. Raises a ValueError listing the recordings that would share one (two folders' `rec.wav`, or `rec.wav`
    and `rec.flac`; names that differ only in case are one file on macOS and Windows), before any work: one would
    overwrite the other's RTTM, and their lines would merge under one id when RTTMs are scored together."""
    ids, by_key = {}, {}
    for path in files:
        file_id = Path(path).stem.replace(" ", "_") or "audio"
        ids[path] = file_id
        by_key.setdefault(file_id.casefold(), []).append(path)
    clashes = [paths for paths in by_key.values() if len(paths) > 1]
    if clashes:
        listed = "; ".join(f"{ids[paths[0]]}.rttm: {', '.join(paths)}" for paths in clashes)
        raise ValueError(
            f"--rttm-out names each RTTM (and its file id) after the recording's file stem, and {len(clashes)} "
            f"name(s) would be shared by several recordings: {listed}. Nothing was diarized: rename the recordings so "
            "their stems differ, or diarize them in separate runs with separate --rttm-out folders"
        )
    return ids


def check_options(args) -> None:
    """Refuses, before any work, an option out of range or one diarize does not use, naming the option."""
    from ..diarization.pipeline import check_settings

    check_settings(
        args.window, args.hop, args.min_turn, threshold=args.threshold, batch_size=args.batch_size,
        option=lambda name: "--" + name.replace("_", "-"),
    )  # fmt: skip
    for option in ("num_speakers", "min_speakers", "max_speakers"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise ValueError(f"--{option.replace('_', '-')} must be at least 1, got {value}")
    if args.min_speakers is not None and args.max_speakers is not None and args.min_speakers > args.max_speakers:
        raise ValueError(f"--min-speakers ({args.min_speakers}) is above --max-speakers ({args.max_speakers})")


def cmd_diarize(args) -> int:
    from ..diarization import Diarizer, segments_to_json, write_rttm
    from ..extras import require

    require("diarize", "wavlmrawnet diarize")
    if args.num_speakers is not None and (args.min_speakers is not None or args.max_speakers is not None):
        raise ValueError("give either --num-speakers or --min-speakers/--max-speakers, not both")
    if args.threshold is not None and not args.db:
        raise ValueError("--threshold names clusters against --db; give the speaker database too")
    check_options(args)
    files, failures = collect_audio(args.inputs)
    out = file_ids = None
    if args.rttm_out:
        file_ids = rttm_file_ids(files)
        out = check_writable(args.rttm_out, folder=True)  # a file there, or a read-only folder: refused now
    model, extractor, precision = load(args)
    database = None
    if args.db:
        from ..recognition import SpeakerDatabase

        database = SpeakerDatabase.load(args.db, model)
        if args.threshold is not None:
            database.threshold = args.threshold
    diarizer = Diarizer(
        model,
        extractor,
        window=args.window,
        hop=args.hop,
        clustering=args.clustering,
        min_turn=args.min_turn,
        vad=not args.no_vad,
        batch_size=args.batch_size,
        precision=precision,
        database=database,
        progress=not args.quiet,
    )
    answers = []
    for path in files:
        try:
            result = diarizer(path, args.num_speakers, args.min_speakers, args.max_speakers)
        except ValueError as error:  # unreadable, no speech, too short, more speakers than windows: named
            failures[path] = getattr(error, "reason", None) or str(error)
            continue
        uri = file_ids[path] if file_ids else Path(path).stem
        if out is not None:
            try:
                write_rttm(out / f"{uri}.rttm", result.segments, uri)
            except OSError as error:  # the folder went away or filled up during the run: this file's failure
                failures[path] = f"its RTTM could not be written to {out / f'{uri}.rttm'}: {error.strerror or error}"
                continue
        answers.append((path, uri, result))
        if not args.json:
            print(
                f"{path}: {result.num_speakers} speaker(s), {len(result.segments)} turn(s), {result.duration:.1f} s "
                f"({result.speech_seconds:.1f} s of speech, {result.num_windows} windows)"
            )
            if out is None:
                for segment in result.segments:
                    print(f"  {segment.start:9.2f} {segment.end:9.2f}  {segment.speaker}")
    if args.json:
        print(json.dumps([json.loads(segments_to_json(r.segments, file=p, duration=round(r.duration, 3)))
                          for p, _, r in answers], indent=2))  # fmt: skip
    report_failures(failures)
    return EXIT_FAILED_INPUTS if failures else 0


def register(commands: argparse._SubParsersAction) -> None:
    from ..diarization.clustering import CLUSTERINGS

    diarize = commands.add_parser(
        "diarize",
        help="who spoke when: speaker turns of each recording (RTTM / JSON)",
        description="Finds the speech (silero-vad), embeds sliding windows, clusters them into speakers and writes "
        "each recording's turns. The speaker count is --num-speakers when known, else estimated (within "
        '--min-speakers/--max-speakers). Needs pip install "wavlmrawnet[diarize]". A recording that cannot be '
        "diarized (unreadable, no speech, shorter than a window, fewer windows than speakers) is reported and "
        "makes the exit status 1; no RTTM is written for it.",
    )
    diarize.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR")
    diarize.add_argument("--num-speakers", type=int, help="the number of speakers, when known")
    diarize.add_argument("--min-speakers", type=int, help="at least this many speakers (estimated count)")
    diarize.add_argument("--max-speakers", type=int, help="at most this many speakers (estimated count)")
    diarize.add_argument(
        "--rttm-out",
        help="folder for one <file stem>.rttm per recording, its file id the stem; recordings that share a stem "
        "(x/rec.wav, y/rec.wav) are refused before any work",
    )
    diarize.add_argument("--json", action="store_true", help="print a JSON list, one object per recording")
    diarize.add_argument("--db", help="speaker database (wavlmrawnet enroll): clusters named by enrolled speakers")
    diarize.add_argument("--threshold", type=float, help="with --db: the score under which a cluster is 'unknown'")
    diarize.add_argument("--window", type=float, default=1.5, help="window length in seconds (1.5)")
    diarize.add_argument("--hop", type=float, default=0.75, help="seconds between window starts (0.75)")
    diarize.add_argument("--clustering", default="spectral", choices=sorted(CLUSTERINGS), help="(spectral)")
    diarize.add_argument("--min-turn", type=float, default=0.5, help="shorter turns go to a neighbour (0.5 s)")
    diarize.add_argument("--no-vad", action="store_true", help="treat the whole recording as speech")
    diarize.add_argument("--quiet", action="store_true", help="no progress bar")
    # No --chunk-seconds: diarize embeds windows of --window seconds, never a whole long file.
    add_runtime_options(
        diarize, vad_option=False, chunk_option=False, batch_size=32, batch_help="windows per forward pass"
    )
    diarize.set_defaults(run=cmd_diarize)
