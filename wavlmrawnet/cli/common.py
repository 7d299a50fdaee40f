"""What every command shares: runtime options, loading a model, collecting inputs, reporting failures."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".au", ".m4a", ".aac", ".opus")
EXIT_FAILED_INPUTS = 1
EXIT_USAGE = 2


def add_runtime_options(parser: argparse.ArgumentParser, vad_option: bool = True) -> None:
    """The options every model-running command shares. `vad_option`: offer `--vad` (silence removal before
    embedding); a command that always removes silence (diarize: `--no-vad` there) leaves it out."""
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
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument(
        "--engine",
        default="torch",
        choices=["torch", "torch-compile", "onnxruntime"],
        help="torch (default, eager); torch-compile (inductor: compiles on the first batch, minutes at WavLM-Large "
        "size); onnxruntime (CPU, fp32 or --dtype int8: exports the model to ONNX first, minutes at WavLM-Large size, "
        "kept in the graph cache ~/.cache/wavlmrawnet/onnx for the next run; WAVLMRAWNET_ONNX_CACHE=DIR or off)",
    )
    parser.add_argument("--batch-size", type=int, default=8, help="files per batch (sorted by length)")
    parser.add_argument(
        "--chunk-seconds",
        type=float,
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

    from ..cpu_malloc import keep_freed_memory
    from ..feature_extraction_wavlmrawnet import WavLMRawNetFeatureExtractor
    from ..modeling_wavlmrawnet import WavLMRawNetForXVector
    from ..precision import describe_cpu, resolve_precision
    from ..recognition.hub_ids import resolve_model

    if args.threads:
        torch.set_num_threads(args.threads)
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
    model = WavLMRawNetForXVector.from_pretrained(model_dir).to(device).eval()
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
    """Files as given, folders searched recursively for audio; inputs that do not exist are failures."""
    files, failures = [], {}
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
            if not found:
                failures[item] = "folder holds no audio files"
            files.extend(found)
        elif path.exists():
            files.append(str(path))
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
    try:
        where.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=where, prefix=".wavlmrawnet-probe-"):
            pass
    except OSError as error:
        raise ValueError(f"cannot write {path}: {error.strerror or error}") from None
    if not folder and path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"cannot write {path}: the file is read-only")
    return path


def report_failures(failures: dict[str, str], report_path: str | None = None) -> None:
    if not failures:
        return
    print(f"{len(failures)} input(s) failed:", file=sys.stderr)
    for path, reason in failures.items():
        print(f"  {path}: {reason}", file=sys.stderr)
    if report_path:
        Path(report_path).write_text("path\treason\n" + "".join(f"{p}\t{r}\n" for p, r in failures.items()))


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
