"""`enroll`, `identify` and `calibrate`: a database of known speakers, who is speaking, calibrated scores."""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
import tempfile
import unicodedata
from pathlib import Path

from .common import (
    EXIT_FAILED_INPUTS,
    add_runtime_options,
    check_writable,
    collect_audio,
    embed_inputs,
    finite_float,
    load,
    positive_int,
    report_failures,
)


def breaks_a_line(text: str) -> bool:
    """Whether `text` holds a character that would split a TSV line or field: a control character (tab, newline,
    carriage return, ...) or a line or paragraph separator. Speaker names with one are refused at enrolment."""
    return any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in text)


def cmd_enroll(args) -> int:
    import numpy as np

    from ..recognition import SpeakerDatabase, check_speaker_name

    check_speaker_name(args.speaker)  # before minutes of embedding
    # The output first: a folder, a write-protected database or an unwritable folder fails now, not after embedding
    # (the atomic save's rename would replace a read-only file, so that is refused too).
    database_path = SpeakerDatabase.check_writable(args.db)
    check_writable(database_path)
    files, failures = collect_audio(args.inputs)
    model, extractor, precision = load(args)
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

    if not Path(args.db).is_file():
        SpeakerDatabase.load(args.db)  # says why, before the model loads: it is missing, or a folder
    files, failures = collect_audio(args.inputs)
    if not args.json:  # a tab or newline in a path would break its TSV line: that file fails, named, the rest run
        for path in [path for path in files if breaks_a_line(path)]:
            files.remove(path)
            failures[repr(path)] = (  # repr: the report on stderr stays one line per file
                "its path holds a tab, newline or other control character, which a TSV line cannot show: rename "
                "the file or use --json"
            )
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


def _write_atomically(path: Path, text: str) -> None:
    """Writes `text` to `path` through a temporary file beside it and a rename: the file is the old one or the new
    one, never a torn one, and keeps its mode (mkstemp creates 0600, which the rename would keep)."""
    from ..recognition.database import replacement_mode

    mode = replacement_mode(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _calibrated_config(folder: Path, calibration: dict, p_target: float, threshold: float) -> str:
    """The text of `folder/config.json` with the calibration, p_target and threshold set and every other key as it
    was, checked by the model's config class (a folder that is no wavlmrawnet model is refused here)."""
    from ..configuration_wavlmrawnet import WavLMRawNetConfig

    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a valid JSON config: {error}") from None
    if not isinstance(config, dict) or config.get("model_type") != WavLMRawNetConfig.model_type:
        found = config.get("model_type") if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"{folder} is not a wavlmrawnet model (config.json model_type {found!r})")
    config.update(calibration=calibration, p_target=p_target, verification_threshold=threshold)
    WavLMRawNetConfig.from_dict(dict(config))  # the values it would refuse on load, refused before writing
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def _write_calibrated_copy(source: Path, target: Path, calibration: dict, p_target: float, threshold: float):
    """Copies the model folder `source` to `target` (missing or empty) with the calibrated config: built in a
    temporary folder beside `target` and renamed onto it when complete, so a failure leaves no half copy."""
    import shutil

    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True)  # copies the files the Hub cache links to
        if target.exists():
            mode = stat.S_IMODE(target.stat().st_mode)  # the empty folder's own mode
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o777 & ~umask  # what mkdir gives (mkdtemp makes 0700, copytree copies the source's)
        os.chmod(staging, mode)
        _write_atomically(staging / "config.json", _calibrated_config(staging, calibration, p_target, threshold))
        os.replace(staging, target)  # onto a missing or empty folder
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def cmd_calibrate(args) -> int:
    from ..evaluation.error_rates import compute_calibration_metrics, compute_metrics
    from ..evaluation.results import read_scores_tsv
    from ..recognition import calibrated_threshold, fit_calibration
    from ..recognition.hub_ids import resolve_model

    # Only config.json changes (the weights are not rewritten): in place it is replaced atomically after every check;
    # with --out the copy is made in a temporary folder beside it and renamed into place when complete. A failure
    # leaves the model folder, and --out, as they were.
    if not args.out and not Path(args.model).is_dir():
        raise ValueError(f"{args.model} is a Hub id: pass --out DIR for the calibrated copy (the cache stays as is)")
    target = Path(args.out) if args.out else Path(args.model)
    if args.out:
        if target.exists():
            check_writable(target, folder=True)  # a file is refused
            if any(target.iterdir()):
                raise ValueError(f"--out {target} exists and is not empty")
        check_writable(target.parent, folder=True)  # the copy is made there, then renamed
    else:
        # Its folder (the temporary file), and the file itself: one without a write bit is refused, not overridden
        # by the rename.
        check_writable(target / "config.json")
    _, _, labels, scores = read_scores_tsv(args.scores)
    calibration = fit_calibration(scores, labels, p_target=args.p_target)
    threshold = calibrated_threshold(calibration, args.p_target)
    source = resolve_model(args.model)
    try:
        if target.resolve() == source.resolve():
            text = _calibrated_config(source, calibration, args.p_target, threshold)
            _write_atomically(target / "config.json", text)
        else:
            _write_calibrated_copy(source, target, calibration, args.p_target, threshold)
    except OSError as error:  # a full disk, a permission lost since the check: nothing was changed
        what = error.strerror or error
        raise OSError(f"cannot write the calibrated model to {target}: {what}; {target} is left as it was") from None
    key = format(args.p_target, "g")
    before = compute_metrics(scores, labels, p_targets=(args.p_target,))
    after = compute_calibration_metrics(scores, labels, p_targets=(args.p_target,), calibration=calibration)
    print(
        f"calibration: llr = {calibration['scale']:.4f} * score + {calibration['offset']:.4f}; "
        f"threshold at p_target {args.p_target:g}: {threshold:.4f}\n"
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
    identify.add_argument("--top-k", type=positive_int, default=5, help="candidates listed per file (default 5)")
    identify.add_argument(
        "--threshold",
        type=finite_float,
        help="override the model's threshold for 'unknown': a finite cosine score (above 1, every file is unknown)",
    )
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
