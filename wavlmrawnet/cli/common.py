"""What every command shares: runtime options, loading a model, collecting inputs, reporting failures."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import tempfile
from pathlib import Path

# What a folder scan embeds: libsndfile's common formats (any case) and what PyAV decodes for `convert`.
AUDIO_SUFFIXES = (".wav", ".wave", ".w64", ".rf64", ".caf", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au",
                  ".m4a", ".aac", ".opus")  # fmt: skip
EXIT_FAILED_INPUTS = 1
EXIT_USAGE = 2


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def thread_count(text: str) -> int:
    """argparse type for --threads: 1 to 1024 (torch fails with a MemoryError far above a machine's cores)."""
    value = positive_int(text)
    if value > 1024:
        raise argparse.ArgumentTypeError(
            f"expected at most 1024 threads, got {value} (this machine has {os.cpu_count()} cores)"
        )
    return value


def finite_float(text: str) -> float:
    """argparse type: a finite number (a NaN threshold would decide every trial the same way, silently)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def add_runtime_options(
    parser: argparse.ArgumentParser,
    vad_option: bool = True,
    chunk_option: bool = True,
    batch_size: int = 8,
    batch_help: str = "files per batch (sorted by length)",
) -> None:
    """The options every model-running command shares. `vad_option`: offer `--vad` (silence removal before
    embedding); a command that always removes silence (diarize: `--no-vad` there) leaves it out. `chunk_option`:
    offer `--chunk-seconds` (windows over a long file); a command that never embeds whole files (diarize) leaves it
    out, so it is refused rather than ignored. `batch_size`, `batch_help`: what `--batch-size` counts there."""
    parser.add_argument(
        "--model",
        required=True,
        help="model folder (config.json, model.safetensors, ...) or Hub id user/repo[@revision] (fetched into the "
        "Hub cache; HF_HUB_OFFLINE=1 reads only the cache)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="where to run (auto: cuda if available, else cpu)",
    )
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16", "float32", "bfloat16", "int8"],
        help="auto (default): bf16 autocast where the hardware runs it natively (AMX or AVX512-BF16 "
        "CPUs, GPUs with bf16), else fp32; the choice and its reason are printed to stderr. int8 (CPU, never "
        "chosen by auto): dynamic int8 linears in WavLM (and its encoder's convolutions) and the fusion "
        "(torch.ao; with --engine onnxruntime, onnxruntime's quantize_dynamic of the exported graph), faster, "
        "results change slightly",
    )
    parser.add_argument("--threads", type=thread_count, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument(
        "--engine",
        default="torch",
        choices=["torch", "torch-compile", "onnxruntime"],
        help="torch (default, eager); torch-compile (inductor: compiles on the first batch, minutes at WavLM-Large "
        "size); onnxruntime (CPU, fp32 or --dtype int8: exports the model to ONNX first, minutes at WavLM-Large size, "
        "kept in the graph cache ~/.cache/wavlmrawnet/onnx for the next run; WAVLMRAWNET_ONNX_CACHE=DIR or off)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=batch_size, help=f"{batch_help} ({batch_size})")
    if chunk_option:
        parser.add_argument(
            "--chunk-seconds",
            type=non_negative_float,
            help="window for long files; default: the model's config.chunk_seconds; 0 = no chunking",
        )
    if not vad_option:
        return
    parser.add_argument(
        "--vad",
        action="store_true",
        help='remove silence before embedding (silero-vad: pip install "wavlmrawnet[vad]"); no speech is a failure '
        "(without --vad, a cheap check still fails files that hold no speech: silence, DC, hum, a steady tone)",
    )


def load(args):
    """(model, feature extractor, precision) for `--model` (a folder or a Hub id), `--device` and `--dtype`."""
    import torch
    from safetensors import SafetensorError

    from ..cpu_malloc import keep_freed_memory
    from ..feature_extraction_wavlmrawnet import WavLMRawNetFeatureExtractor
    from ..modeling_wavlmrawnet import WavLMRawNetForXVector
    from ..precision import describe_cpu, resolve_precision
    from ..recognition.hub_ids import resolve_model

    if args.threads:
        torch.set_num_threads(args.threads)
    if not str(args.model).strip():
        raise SystemExit("error: --model is empty: give a model folder or a Hub id (user/repo)")
    try:
        model_dir = resolve_model(args.model)
    except FileNotFoundError as error:
        raise SystemExit(f"error: {error}") from None
    device = (
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda was asked for, but torch sees no CUDA device")
    precision = resolve_precision(args.dtype, device)
    engine = getattr(args, "engine", "torch")
    if precision.name == "int8" and engine == "onnxruntime":
        from ..engines import onnx_int8_description

        precision = dataclasses.replace(precision, reason=f"asked for: {onnx_int8_description()}; {describe_cpu()}")
    elif precision.name == "int8" and engine != "torch":
        raise SystemExit(f"error: --dtype int8 runs on the torch engine (torch.ao) or onnxruntime, not {engine}")
    print(precision, file=sys.stderr)
    if device == "cpu":
        keep_freed_memory()  # large activations reuse the heap instead of faulting in fresh pages per forward
    try:
        model = WavLMRawNetForXVector.from_pretrained(model_dir).to(device).eval()
    except (OSError, ValueError, SafetensorError) as error:  # a damaged config, missing or truncated weights
        raise SystemExit(f"error: cannot load the model in {model_dir}: {error}") from None
    if precision.name == "int8" and engine == "torch":
        model.for_precision("int8", inplace=True)  # the loaded float model is not needed beside its int8 twin
    if engine != "torch":
        from ..engines import use_engine

        try:
            seconds = use_engine(model, engine, threads=args.threads, int8=precision.name == "int8")
        except ValueError as error:
            raise SystemExit(f"error: {error}") from None
        graph = getattr(model, "onnx_graph", None)
        where = f" (graph: {graph})" if graph is not None else ""
        print(f"engine {args.engine}: prepared in {seconds:.1f} s{where}", file=sys.stderr)
    if (model_dir / "preprocessor_config.json").is_file():
        extractor = WavLMRawNetFeatureExtractor.from_pretrained(model_dir)
    else:
        extractor = model.default_feature_extractor()
    return model, extractor, precision


def collect_audio(inputs: list[str]) -> tuple[list[str], dict[str, str]]:
    """Files as given, folders searched recursively for audio (by extension); inputs that do not exist are failures,
    and so is an audio-named link that leads nowhere. Files a folder holds that are not audio by their extension are
    not embedded, and a note on stderr counts them (name such a file directly to embed it)."""
    files, failures = [], {}
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found, other = [], []
            for candidate in sorted(path.rglob("*")):
                if candidate.suffix.lower() not in AUDIO_SUFFIXES:
                    if candidate.is_file():
                        other.append(candidate)
                elif candidate.is_file():
                    found.append(str(candidate))
                elif not candidate.exists():
                    failures[str(candidate)] = "a link to a file that does not exist"
            if not found:
                failures[item] = "folder holds no audio files"
            if other:
                print(f"note: {item}: {len(other)} file(s) without an audio extension not embedded (e.g. "
                      f"{other[0]}); name a file directly to embed it", file=sys.stderr)  # fmt: skip
            files.extend(found)
        elif path.exists():
            files.append(str(path))
        elif path.is_symlink():
            failures[item] = "a link to a file that does not exist"
        else:
            failures[item] = "no such file or folder"
    return list(dict.fromkeys(files)), failures


def check_writable(path: str | os.PathLike, folder: bool = False) -> Path:
    """Checks, before any work, that an output can be written: `path` is a file to write (or, with `folder=True`, a
    folder to write into). Its folder is created and a probe file is written and removed there; an existing file that
    is read-only, a folder where a file is expected (or the reverse) is refused. Raises ValueError naming the path and
    the reason, so a run stops in a second instead of losing minutes of results at the end."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise ValueError(f"cannot write into {path}: it is a file, not a folder")
    if not folder and path.is_dir():
        raise ValueError(f"cannot write {path}: it is a folder, not a file")
    where = path if folder else path.parent
    for parent in (where, *where.parents):
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"cannot write {path}: {parent} is a file, not a folder")
            break
    try:
        where.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=where, prefix=".wavlmrawnet-probe-"):
            pass
    except OSError as error:
        raise ValueError(f"cannot write {path}: {error.strerror or error}") from None
    # A file without any write bit is write-protected, as `rm` treats it, even for root (whom os.access lets by).
    if not folder and path.exists() and (not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222):
        raise ValueError(f"cannot write {path}: the file is write-protected")
    return path


def tsv_field(text: str) -> str:
    r"""`text` as one TSV field: a backslash, tab, newline or carriage return in it (a file name may hold any of them)
    is written as `\\`, `\t`, `\n`, `\r`, so every row stays one line of two fields."""
    return str(text).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def report_failures(failures: dict[str, str], report_path: str | None = None) -> None:
    """Lists failed inputs on stderr, and in `report_path` (a TSV: path, reason; `tsv_field` escapes) where given.
    The report is written on every run, with only its header when nothing failed, so an old report never stands for
    a new run."""
    if report_path:
        rows = "".join(f"{tsv_field(p)}\t{tsv_field(r)}\n" for p, r in failures.items())
        Path(report_path).write_text("path\treason\n" + rows)
    if not failures:
        return
    print(f"{len(failures)} input(s) failed:", file=sys.stderr)
    for path, reason in failures.items():
        print(f"  {path}: {reason}", file=sys.stderr)


def embed_inputs(args, files: list[str], model, extractor, precision, progress: bool = False, **options):
    """`embed_files` with the runtime options every command takes (batch size, chunking, precision, VAD)."""
    from ..evaluation.embedding import embed_files

    return embed_files(
        model,
        extractor,
        files,
        batch_size=args.batch_size,
        chunk_seconds=args.chunk_seconds,
        precision=precision,
        progress=progress,
        vad=args.vad,
        require_speech=True,  # a file without speech (silence, hum, a tone) fails instead of scoring
        **options,
    )
