"""`diarize`: who spoke when in each recording, as RTTM and/or JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import EXIT_FAILED_INPUTS, add_runtime_options, collect_audio, load, report_failures


def cmd_diarize(args) -> int:
    from ..diarization import Diarizer, segments_to_json, write_rttm
    from ..extras import require

    require("diarize", "wavlmrawnet diarize")
    if args.num_speakers is not None and (args.min_speakers is not None or args.max_speakers is not None):
        raise ValueError("give either --num-speakers or --min-speakers/--max-speakers, not both")
    if args.threshold is not None and not args.db:
        raise ValueError("--threshold names clusters against --db; give the speaker database too")
    files, failures = collect_audio(args.inputs)
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
    out = Path(args.rttm_out) if args.rttm_out else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    answers = []
    for path in files:
        try:
            result = diarizer(path, args.num_speakers, args.min_speakers, args.max_speakers)
        except ValueError as error:  # unreadable, no speech, too short, more speakers than windows: named
            failures[path] = getattr(error, "reason", None) or str(error)
            continue
        uri = Path(path).stem
        if out is not None:
            write_rttm(out / f"{uri}.rttm", result.segments, uri)
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
    diarize.add_argument("--rttm-out", help="folder for one <file stem>.rttm per recording")
    diarize.add_argument("--json", action="store_true", help="print a JSON list, one object per recording")
    diarize.add_argument("--db", help="speaker database (wavlmrawnet enroll): clusters named by enrolled speakers")
    diarize.add_argument("--threshold", type=float, help="with --db: the score under which a cluster is 'unknown'")
    diarize.add_argument("--window", type=float, default=1.5, help="window length in seconds (1.5)")
    diarize.add_argument("--hop", type=float, default=0.75, help="seconds between window starts (0.75)")
    diarize.add_argument("--clustering", default="spectral", choices=sorted(CLUSTERINGS), help="(spectral)")
    diarize.add_argument("--min-turn", type=float, default=0.5, help="shorter turns go to a neighbour (0.5 s)")
    diarize.add_argument("--no-vad", action="store_true", help="treat the whole recording as speech")
    diarize.add_argument("--quiet", action="store_true", help="no progress bar")
    add_runtime_options(diarize, vad_option=False)
    diarize.set_defaults(run=cmd_diarize, batch_size=32)
