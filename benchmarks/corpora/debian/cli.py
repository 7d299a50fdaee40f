"""`python -m benchmarks.corpora.debian_voices` (or `python -m benchmarks.corpora.debian`): fetch the voices,
build the corpus, print a summary."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import REPO_ROOT
from .apt import AptSource, PrivateApt, os_codename, private_sources_list, system_apt_sources
from .corpus import REPORT_FILENAME, BuildReport, build_corpus, check_build_arguments, existing_outputs
from .synthesizers import EspeakMbrolaSynthesizer, RHVoiceSynthesizer, Synthesizer, ToolPaths
from .voices import (
    RHVOICE_LANGUAGE_PACKAGES,
    Voice,
    mbrola_candidates,
    parse_espeak_mbrola_voices,
    parse_rhvoice_voices,
    select_speakers,
)

DEFAULT_OUT = Path("~/.cache/wavlmrawnet/debian_voices").expanduser()
DEFAULT_CACHE = Path("~/.cache/wavlmrawnet/debian_packages").expanduser()


@dataclass
class PreparedVoices:
    mbrola: list[Voice]
    rhvoice: list[Voice]
    synthesizers: dict[str, Synthesizer]
    failed: dict[str, str]  # voice or package -> reason (not attempted)
    tools_bytes: int


MBROLA_TOOL_PACKAGES = ("espeak-ng", "libespeak-ng1", "espeak-ng-data", "mbrola")
RHVOICE_TOOL_PACKAGES = ("librhvoice5", "librhvoice-core7", "librhvoice-audio2")


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def prepare_debian_voices(
    cache_dir: Path,
    max_mbrola: int | None,
    max_rhvoice: int | None,
    seed: int,
    mirror: str | None = None,
    suite: str | None = None,
    log: Callable[[str], None] = print,
) -> PreparedVoices:
    """Private apt update, download and unpack of the synthesisers and the chosen voices; returns the voices and
    their synthesisers. Needs the network to the Debian mirror (nothing is installed on the system)."""
    for tool in ("apt-get", "apt-cache", "dpkg"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found: this script needs a Debian system with apt and dpkg")
    codename = suite or os_codename()
    if mirror:
        keyring = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
        sources = [AptSource(mirror.rstrip("/"), (codename,), str(keyring) if keyring.exists() else None)]
    else:
        sources = system_apt_sources()
    apt = PrivateApt(cache_dir, private_sources_list(sources, codename))
    log(f"apt-get update with {apt.dir / 'sources.list'} ...")
    apt.update()
    mbrola_packages = [p for p in apt.package_names("mbrola-") if re.fullmatch(r"mbrola-[a-z]{2}\d", p)]
    rhvoice_packages = [p for p in apt.package_names("rhvoice-") if p in RHVOICE_LANGUAGE_PACKAGES.values()]
    log(f"Debian offers {len(mbrola_packages)} MBROLA voice packages and {len(rhvoice_packages)} RHVoice languages")
    if not mbrola_packages or not rhvoice_packages:
        raise RuntimeError("the private apt lists have no mbrola-* or rhvoice-* packages (no contrib / non-free?)")
    # RHVoice voices are only known once their language packages are unpacked, so all of them are fetched.
    apt.fetch_and_extract(
        apt.packages_to_fetch([*MBROLA_TOOL_PACKAGES, *RHVOICE_TOOL_PACKAGES, *rhvoice_packages]), log
    )
    tools = ToolPaths(apt.root)
    failed: dict[str, str] = {}
    candidates, unusable = mbrola_candidates(
        parse_espeak_mbrola_voices(tools.espeak_data / "voices/mb"), mbrola_packages
    )
    failed.update({f"mbrola/{package}": reason for package, reason in unusable.items()})
    mbrola = select_speakers(candidates, max_mbrola, seed, salt=1)
    apt.fetch_and_extract(apt.packages_to_fetch([v.package for v in mbrola]), log)
    link_dir = tools.espeak_data / "mbrola"  # espeak-ng looks for <its data>/mbrola/<database> first
    link_dir.mkdir(exist_ok=True)
    usable = []
    for voice in mbrola:
        database = voice.name.removeprefix("mb-")
        source = apt.root / "usr/share/mbrola" / database / database
        if not source.is_file():
            failed[voice.key] = f"package {voice.package} has no database file usr/share/mbrola/{database}/{database}"
            continue
        link = link_dir / database
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(source)
        usable.append(voice)
    rhvoice = select_speakers(parse_rhvoice_voices(tools.rhvoice_data / "voices"), max_rhvoice, seed, salt=2)
    synthesizers: dict[str, Synthesizer] = {
        "mbrola": EspeakMbrolaSynthesizer(tools),
        "rhvoice": RHVoiceSynthesizer(tools),
    }
    return PreparedVoices(usable, rhvoice, synthesizers, failed, _folder_bytes(Path(cache_dir)))


def check_outside_repository(path: Path, what: str) -> None:
    """Refuse a folder inside this repository unless git ignores it (generated voices must never be committed)."""
    path = path.resolve()
    if path != REPO_ROOT and REPO_ROOT not in path.parents:
        return
    try:
        ignored = subprocess.run(["git", "-C", str(REPO_ROOT), "check-ignore", "-q", str(path)]).returncode == 0
    except FileNotFoundError:
        ignored = False
    if not ignored:
        raise ValueError(
            f"{what} {path} is inside the repository and not git-ignored; the MBROLA voices' licence forbids "
            "redistributing their output, so choose a folder outside the repository"
        )


def _print_summary(report: BuildReport, prepared_failed: Mapping[str, str], tools_bytes: int, timings: dict) -> None:
    print("\n=== Debian voices corpus ===")
    print(f"output: {report.out}")
    for split, info in report.splits.items():
        trials = f", {info['trials']} trials" if "trials" in info else ""
        same = f" ({info['trials_same_language']} same-language)" if info.get("trials_same_language") else ""
        print(
            f"  {info['folder']:<18} {info['speakers']:>3} speakers ({info['voices_ok']}/{info['voices_planned']} "
            f"voices ok), {info['utterances']:>5} utterances, {info['seconds'] / 3600:.2f} h{trials}{same}"
        )
    total_seconds = sum(info["seconds"] for info in report.splits.values())
    total_utterances = sum(info["utterances"] for info in report.splits.values())
    print(
        f"  total: {total_utterances} utterances, {total_seconds / 3600:.2f} h of audio, "
        f"{report.wav_bytes / 1e6:.0f} MB of wav; Debian packages (cache): {tools_bytes / 1e6:.0f} MB"
    )
    print("  time: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.items()))
    failures = {**prepared_failed, **report.failed}
    if failures:
        print(f"\n{len(failures)} voices / packages could not be used:")
        for key, reason in sorted(failures.items()):
            print(f"  {key}: {reason}")
    for problem in report.problems:
        print(f"PROBLEM: {problem}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.corpora.debian_voices",
        description="Build a speaker corpus (VoxCeleb layout) from Debian's MBROLA and RHVoice voices.",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"corpus folder (default {DEFAULT_OUT})")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE,
        help=f"apt lists and unpacked packages, reused between runs (default {DEFAULT_CACHE})",
    )
    parser.add_argument("--utterances-per-voice", type=int, default=20)
    parser.add_argument("--videos-per-speaker", type=int, default=3, help="sessions per voice (rate/pitch offsets)")
    parser.add_argument("--max-mbrola-voices", type=int, default=None, help="seeded random subset (default: all)")
    parser.add_argument(
        "--max-rhvoice-voices",
        type=int,
        default=None,
        help="seeded random subset of RHVoice speakers (a person with two voices counts once)",
    )
    parser.add_argument("--min-seconds", type=float, default=3.0)
    parser.add_argument("--max-seconds", type=float, default=10.0)
    parser.add_argument("--test-fraction", type=float, default=0.3, help="share of MBROLA speakers in in_domain/test")
    parser.add_argument("--max-trials", type=int, default=6000, help="trials per test split at most (half target)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="voices rendered in parallel")
    parser.add_argument("--mirror", default=None, help="Debian mirror URL (default: the one the system's apt uses)")
    parser.add_argument("--suite", default=None, help="Debian suite (default: this system's codename)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing corpus under --out")
    args = parser.parse_args(argv)
    args.out, args.cache_dir = args.out.expanduser(), args.cache_dir.expanduser()
    for name in ("max_mbrola_voices", "max_rhvoice_voices"):
        value = getattr(args, name)
        if value is not None and value < (3 if name == "max_mbrola_voices" else 2):
            parser.error(f"--{name.replace('_', '-')} must be >= {3 if name == 'max_mbrola_voices' else 2}")
    try:
        check_build_arguments(
            args.utterances_per_voice,
            args.videos_per_speaker,
            args.min_seconds,
            args.max_seconds,
            args.max_trials,
            args.jobs,
        )
        check_outside_repository(args.out, "--out")
        check_outside_repository(args.cache_dir, "--cache-dir")
        if existing_outputs(args.out) and not args.overwrite:
            raise ValueError(f"{args.out} already holds a corpus; pass --overwrite to replace it")
    except ValueError as error:
        parser.error(str(error))

    start = time.perf_counter()
    try:
        prepared = prepare_debian_voices(
            args.cache_dir, args.max_mbrola_voices, args.max_rhvoice_voices, args.seed, args.mirror, args.suite
        )
        prepared_at = time.perf_counter()
        print(
            f"{len(prepared.mbrola)} MBROLA and {len(prepared.rhvoice)} RHVoice voices to synthesise "
            f"({len(prepared.failed)} unusable, listed at the end)"
        )
        report = build_corpus(
            args.out,
            prepared.mbrola,
            prepared.rhvoice,
            prepared.synthesizers,
            utterances_per_voice=args.utterances_per_voice,
            videos_per_speaker=args.videos_per_speaker,
            min_seconds=args.min_seconds,
            max_seconds=args.max_seconds,
            test_fraction=args.test_fraction,
            seed=args.seed,
            max_trials=args.max_trials,
            jobs=args.jobs,
            overwrite=args.overwrite,
        )
    except (RuntimeError, ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    timings = {"packages": prepared_at - start, "synthesis": report.seconds, "total": time.perf_counter() - start}
    report_path = args.out / REPORT_FILENAME
    data = json.loads(report_path.read_text(encoding="utf-8"))
    data.update(
        {
            "unusable_packages_or_voices": prepared.failed,
            "package_cache_bytes": prepared.tools_bytes,
            "timings_seconds": {k: round(v, 1) for k, v in timings.items()},
            "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        }
    )
    report_path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    _print_summary(report, prepared.failed, prepared.tools_bytes, timings)
    return 1 if report.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
