"""`enroll`, `identify` and `calibrate`: a database of known speakers, who is speaking, calibrated scores."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import EXIT_FAILED_INPUTS, add_runtime_options, collect_audio, embed_inputs, load, report_failures


def cmd_enroll(args) -> int:
    import numpy as np

    from ..recognition import SpeakerDatabase, check_speaker_name

    check_speaker_name(args.speaker)  # before minutes of embedding
    files, failures = collect_audio(args.inputs)
    model, extractor, precision = load(args)
    database_path = Path(args.db)
    if database_path.exists():  # a wrong model or a damaged file fails now, not after embedding
        SpeakerDatabase.load(database_path, model)
    result = embed_inputs(args, files, model, extractor, precision)
    failures.update(result.failures)
    if failures:  # a speaker is enrolled from all of its files or not at all
        report_failures(failures)
        print(f"error: {args.speaker!r} was not enrolled; {database_path} is unchanged", file=sys.stderr)
        return EXIT_FAILED_INPUTS
    # Read-modify-write under the file's lock: another `enroll` on the same --db waits, then adds to what this one
    # wrote (reading before embedding and saving after lost one writer's speaker).
    with SpeakerDatabase.lock(database_path):
        database = (
            SpeakerDatabase.load(database_path, model) if database_path.exists() else SpeakerDatabase.for_model(model)
        )
        updated = args.speaker in database
        database.add(args.speaker, np.stack([result.embeddings[path] for path in files]))
        database.save(database_path)
    print(
        f"{'updated' if updated else 'enrolled'} {args.speaker!r} from {len(files)} file(s) "
        f"({database.count(args.speaker)} in all); {database_path} holds {len(database)} speaker(s)"
    )
    return 0


def cmd_identify(args) -> int:
    import numpy as np

    from ..recognition import SpeakerDatabase

    files, failures = collect_audio(args.inputs)
    model, extractor, precision = load(args)
    database = SpeakerDatabase.load(args.db, model)
    if len(database) == 0:
        raise ValueError(f"speaker database {args.db} is empty: enrol speakers first (wavlmrawnet enroll)")
    result = embed_inputs(args, files, model, extractor, precision)
    failures.update(result.failures)
    done = [path for path in files if path in result.embeddings]
    answers = (
        database.identify(np.stack([result.embeddings[p] for p in done]), threshold=args.threshold, top_k=args.top_k)
        if done
        else []
    )
    threshold = database.threshold if args.threshold is None else args.threshold
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "file": path,
                        "speaker": answer["speaker"],
                        "score": answer["score"],
                        "threshold": threshold,
                        "candidates": [{"speaker": name, "score": score} for name, score in answer["candidates"]],
                    }
                    for path, answer in zip(done, answers)
                ],
                indent=2,
            )
        )
    else:
        for path, answer in zip(done, answers):
            ranked = "  ".join(f"{name} {score:.4f}" for name, score in answer["candidates"])
            print(f"{path}\t{answer['speaker']}\t(threshold {threshold:.4f}; top: {ranked})")
    report_failures(failures)
    return EXIT_FAILED_INPUTS if failures else 0


def cmd_calibrate(args) -> int:
    import shutil

    from ..evaluation.error_rates import compute_calibration_metrics, compute_metrics
    from ..evaluation.results import read_scores_tsv
    from ..modeling_wavlmrawnet import WavLMRawNetForXVector
    from ..recognition import calibrated_threshold, fit_calibration
    from ..recognition.hub_ids import resolve_model

    _, _, labels, scores = read_scores_tsv(args.scores)
    calibration = fit_calibration(scores, labels, p_target=args.p_target)
    source = resolve_model(args.model)
    target = Path(args.out) if args.out else source
    if not args.out and not Path(args.model).is_dir():
        raise ValueError(f"{args.model} is a Hub id: pass --out DIR for the calibrated copy (the cache stays as is)")
    if target != source:
        if target.exists() and any(target.iterdir()):
            raise ValueError(f"--out {target} exists and is not empty")
        shutil.copytree(source, target, dirs_exist_ok=True)  # copies the files the Hub cache links to
    model = WavLMRawNetForXVector.from_pretrained(target)
    model.config.calibration = calibration
    model.config.p_target = args.p_target
    model.config.verification_threshold = calibrated_threshold(calibration, args.p_target)
    model.save_pretrained(target)
    key = format(args.p_target, "g")
    before = compute_metrics(scores, labels, p_targets=(args.p_target,))
    after = compute_calibration_metrics(scores, labels, p_targets=(args.p_target,), calibration=calibration)
    print(
        f"calibration: llr = {calibration['scale']:.4f} * score + {calibration['offset']:.4f}; "
        f"threshold at p_target {args.p_target:g}: {model.config.verification_threshold:.4f}\n"
        f"on these {len(scores)} dev trials: actual DCF {after['act_dcf'][key]:.4f} "
        f"(minDCF {before['min_dcf'][key]:.4f}), "
        f"Cllr {after['cllr']:.4f} (minCllr {after['min_cllr']:.4f})\n"
        f"written to {target / 'config.json'}"
    )
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    enroll = commands.add_parser(
        "enroll",
        help="add a speaker (or more utterances of one) to a speaker database",
        description="Embeds the files and adds them to SPEAKER in the database (created if missing): the speaker's "
        "embedding is the normalised mean of all its utterances. The database records the model's identity and "
        "refuses another model. If any file fails, nothing is enrolled.",
    )
    enroll.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR")
    enroll.add_argument("--db", required=True, help="speaker database (.safetensors), created if it does not exist")
    enroll.add_argument("--speaker", required=True, help="the speaker's name")
    add_runtime_options(enroll)
    enroll.set_defaults(run=cmd_enroll)

    identify = commands.add_parser(
        "identify",
        help="who is speaking? rank the enrolled speakers for each file",
        description="Scores each file against every enrolled speaker (cosine). The best one is the answer, or "
        "'unknown' when its score is below the model's threshold (open-set).",
    )
    identify.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR")
    identify.add_argument("--db", required=True, help="speaker database written by `wavlmrawnet enroll`")
    identify.add_argument("--top-k", type=int, default=5, help="candidates listed per file (default 5)")
    identify.add_argument("--threshold", type=float, help="override the model's threshold for 'unknown'")
    identify.add_argument("--json", action="store_true", help="print a JSON list, one object per file")
    add_runtime_options(identify)
    identify.set_defaults(run=cmd_identify)

    calibrate = commands.add_parser(
        "calibrate",
        help="fit score calibration (cosine -> log-likelihood ratio) on dev trial scores",
        description="Fits llr = scale * score + offset by prior-weighted logistic regression (FoCal/BOSARIS) on a "
        "scores TSV from `wavlmrawnet score --scores-out`, stores config.calibration and p_target, and sets "
        "config.verification_threshold at the Bayes threshold for p_target. Use dev trials, not your test trials.",
    )
    calibrate.add_argument("--model", required=True, help="model folder (updated in place) or Hub id (needs --out)")
    calibrate.add_argument("--scores", required=True, help="dev scores TSV: enrol, test, label, score")
    calibrate.add_argument("--p-target", type=float, default=0.01, help="prior of a same-speaker trial (0.01)")
    calibrate.add_argument("--out", help="write the calibrated model to this new folder instead")
    calibrate.set_defaults(run=cmd_calibrate)
