"""Inference engines for a loaded `WavLMRawNetForXVector`: eager torch (the default), `torch.compile` (inductor) and
ONNX Runtime. `use_engine` swaps the model's forward, so `embed`, `get_embeddings`, `embed_files` and the CLI run on
the chosen engine unchanged:

    from wavlmrawnet.engines import use_engine
    startup_seconds = use_engine(model, "onnxruntime")   # exports once, then every forward runs in ONNX Runtime

Only embeddings come back from the compiled and ONNX engines (`logits`, `loss` and `hidden_states` are None): they
are for inference. ONNX Runtime runs fp32 on the CPU whatever the torch precision, or, asked for with `int8=True`,
onnxruntime's dynamic int8 of the exported graph (`quantize_onnx_int8`); torch-compile follows the precision
(autocast) in effect when it runs. Their embeddings are checked: NaN or infinity is an error, never a
result. torch-compile is refused where torch runs AVX2 CPU kernels (inductor's AVX2 code gave NaN with torch 2.13).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers.modeling_outputs import XVectorOutput

from .precision import int8_products_may_saturate

logger = logging.getLogger(__name__)

ENGINES = ("torch", "torch-compile", "onnxruntime")


def _check(model) -> None:
    from .modeling_wavlmrawnet import WavLMRawNetForXVector

    if not isinstance(model, WavLMRawNetForXVector):
        raise TypeError(f"expected a WavLMRawNetForXVector, got {type(model).__name__}")
    if model.training:
        raise ValueError("engines are for inference: call model.eval() first")


def _finite(embeddings: torch.Tensor, engine: str) -> torch.Tensor:
    """`embeddings`, or a clear error where an engine returned NaN or infinity (the model's inputs are checked first,
    so this is the engine's fault, never the audio's)."""
    if not bool(torch.isfinite(embeddings).all()):
        raise RuntimeError(
            f"the {engine} engine returned non-finite embeddings for finite input; run with --engine torch "
            "(eager) and report the torch version and CPU"
        )
    return embeddings


def _compiled_forward(model):
    """The model's embedding forward through `torch.compile` (inductor, dynamic batch and length, frozen weights).

    WavLM's convolutional feature encoder stays eager (its time-major inference kernels): on a Zen 4 with torch 2.13,
    inductor's AVX-512 code for it corrupted the heap at WavLM-Large size, and for transformers' own encoder too.
    """
    eager_forward = model.forward
    encoder = model.wavlm.feature_extractor

    def eager_encoder(*args, **kwargs):
        # The class's forward at call time: `set_fast_paths` swaps the encoder's class (fast and transformers' own).
        return type(encoder).forward(encoder, *args, **kwargs)

    encoder.forward = torch.compiler.disable(eager_encoder, recursive=True)

    def embeddings(input_values, attention_mask):
        return eager_forward(input_values, attention_mask=attention_mask, return_dict=True).embeddings

    # freezing: inductor folds the (inference-only) weights in as constants and prepacks them for oneDNN.
    compiled = torch.compile(embeddings, dynamic=True, options={"freezing": True})

    def forward(input_values, attention_mask=None, labels=None, **kwargs):
        if labels is not None:
            raise ValueError("the torch-compile engine is for inference: it takes no labels")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_values, dtype=torch.long)
        return XVectorOutput(embeddings=_finite(compiled(input_values, attention_mask), "torch-compile"))

    return forward


def onnx_int8_description(reduce_range: bool | None = None) -> str:
    """What onnxruntime's int8 means here, for the precision line and the results (`reduce_range`: default this
    CPU's choice, `quantize_onnx_int8`)."""
    reduce_range = int8_products_may_saturate() if reduce_range is None else reduce_range
    weights = (
        "7-bit weights (reduce_range: int8 products may saturate on this CPU)" if reduce_range else "int8 weights"
    )
    return f"onnxruntime dynamic int8 (quantize_dynamic, {weights}): the graph's MatMul/Gemm products, the rest fp32"


def quantize_onnx_int8(onnx_path: Path, target: Path | None = None, reduce_range: bool | None = None) -> Path:
    """onnxruntime's dynamic int8 of an exported graph, written to `target` (default: beside it as
    `<name>.int8.onnx`): the weights of its MatMul and Gemm products int8 per output channel, their activations
    quantised on the fly from their own range (no calibration data), everything else fp32. The other int8
    implementation is torch.ao's (`quantization.py`); docs/performance.md compares the two.

    `reduce_range` (default: where `precision.int8_products_may_saturate()`, x86 CPUs without VNNI or AMX) keeps the
    weights to 7 bits, so the kernels' int16 sums of u8 x s8 pairs cannot overflow; at full range such sums moved
    some embeddings far from fp32 (docs/performance.md)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    reduce_range = int8_products_may_saturate() if reduce_range is None else reduce_range
    target = target or onnx_path.with_name(f"{onnx_path.stem}.int8.onnx")
    quantize_dynamic(
        onnx_path, target, op_types_to_quantize=["MatMul", "Gemm"], per_channel=True,
        weight_type=QuantType.QInt8, reduce_range=reduce_range,
    )  # fmt: skip
    return target


# The onnxruntime engine's exported graphs are kept here, one folder per model fingerprint, so a model exported once
# (minutes at the default size) starts in seconds next time. "off" (or "0") exports to a temporary folder instead.
ONNX_CACHE_ENV = "WAVLMRAWNET_ONNX_CACHE"
# The cache's size budget in GB (default 10: about five `default` models with their int8 graphs); "unlimited" keeps
# everything. A new version of torch, onnxruntime or this package gives every model a new fingerprint, so without a
# budget each upgrade would leave gigabytes of graphs no run can use again.
ONNX_CACHE_MAX_GB_ENV = "WAVLMRAWNET_ONNX_CACHE_MAX_GB"
ONNX_CACHE_DEFAULT_MAX_GB = 10.0
ONNX_EXPORT_OPTIONS = {"normalize_input": False}  # the feature extractor has normalised what the engine is fed


def onnx_cache_root() -> Path | None:
    """Where exported graphs are kept: `$WAVLMRAWNET_ONNX_CACHE`, else `$XDG_CACHE_HOME/wavlmrawnet/onnx` (default
    `~/.cache/wavlmrawnet/onnx`); None where the variable says "off"."""
    value = os.environ.get(ONNX_CACHE_ENV)
    if value is not None:
        return None if value.strip().lower() in ("", "0", "off", "no", "false") else Path(value).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wavlmrawnet" / "onnx"


def onnx_cache_max_bytes() -> int | None:
    """The graph cache's size budget (`$WAVLMRAWNET_ONNX_CACHE_MAX_GB`, default 10 GB), or None for "unlimited". A
    value that is not a number of GB is an error, not a silent default."""
    value = os.environ.get(ONNX_CACHE_MAX_GB_ENV, "").strip()
    if not value:
        return int(ONNX_CACHE_DEFAULT_MAX_GB * 1e9)
    if value.lower() in ("unlimited", "none"):
        return None
    try:
        gigabytes = float(value)
    except ValueError:
        gigabytes = float("nan")
    if gigabytes == float("inf"):
        return None
    if not gigabytes >= 0:
        raise ValueError(f"{ONNX_CACHE_MAX_GB_ENV} must be a size in GB (e.g. 10) or 'unlimited', got {value!r}")
    return int(gigabytes * 1e9)


FINGERPRINT = re.compile(r"[0-9a-f]{32}")  # model_fingerprint's names: nothing else in the cache folder is pruned
# What a process killed while exporting (its staging folder) or pruning leaves behind; removed once a day old (an
# export in progress is minutes old).
LEFTOVER = re.compile(r"\.(pruned-)?[0-9a-f]{32}-.+")
LEFTOVER_SECONDS = 86400


def _folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())


def prune_onnx_cache(root: Path, max_bytes: int | None, keep: Path | None = None) -> list[Path]:
    """Removes the least recently used graphs from the cache `root` until it holds at most `max_bytes` (None: no
    limit); returns the folders removed. Only complete graph folders (a fingerprint's name and its `complete` marker,
    touched on every use) are candidates, and `keep` (the graph in use) never is; a killed export's or prune's
    leftovers are removed once a day old; other files in `root` are left alone. A folder is renamed out of the way
    before it is deleted, so a process reading the cache sees a whole graph or none (one it cannot load is exported
    again)."""
    if not root.is_dir():
        return []
    entries = []
    for folder in root.iterdir():
        marker = folder / "complete"
        if not folder.is_dir() or folder.is_symlink():
            continue
        if FINGERPRINT.fullmatch(folder.name) and marker.is_file():
            entries.append((marker.stat().st_mtime, folder, _folder_bytes(folder)))
        elif LEFTOVER.fullmatch(folder.name) and time.time() - folder.stat().st_mtime > LEFTOVER_SECONDS:
            shutil.rmtree(folder, ignore_errors=True)  # a killed export's staging folder, or a killed prune's
    if max_bytes is None:
        return []
    total = sum(size for _, _, size in entries)
    removed = []
    for _, folder, size in sorted(entries, key=lambda entry: entry[0]):
        if total <= max_bytes:
            break
        if keep is not None and folder.resolve() == keep.resolve():
            continue
        doomed = root / f".pruned-{folder.name}-{os.getpid()}"
        try:
            os.replace(folder, doomed)
        except OSError:  # another process pruned it, or is replacing it: not ours to count
            continue
        shutil.rmtree(doomed, ignore_errors=True)
        total -= size
        removed.append(folder)
    return removed


def model_fingerprint(model) -> str:
    """A digest of everything the exported graph depends on: the weights and buffers (names, shapes, dtypes and
    bytes), the config, the package's code, the export options and the torch, transformers and onnxruntime versions.
    Any change gives a new graph, never a stale one."""
    import onnxruntime

    digest = hashlib.blake2b(digest_size=16)
    for part in (torch.__version__, transformers.__version__, onnxruntime.__version__, repr(ONNX_EXPORT_OPTIONS),
                 model.config.to_json_string()):  # fmt: skip
        digest.update(part.encode() + b"\0")
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _cached_graph(model, folder: Path, int8: bool) -> Path:
    """The model's exported graph (and its int8 version where asked) in its cache `folder`, exported and added where
    missing. Each file is written under a temporary name and renamed into place, so concurrent processes and an
    interrupted export never leave a partial graph behind (the first complete one is kept). After a write, the least
    recently used graphs beyond the cache's budget are removed (`prune_onnx_cache`)."""
    from .onnx_export import export_onnx

    budget = onnx_cache_max_bytes()  # a bad value stops here, before minutes of export
    root = folder.parent
    graph = folder / "model.onnx"
    written = False
    if not (folder / "complete").exists():
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=root))
        try:
            export_onnx(model, staging / "model.onnx", check=False, **ONNX_EXPORT_OPTIONS)
            (staging / "complete").write_text(f"{model.config.model_type} exported with torch {torch.__version__}\n")
            if folder.exists() and not (folder / "complete").exists():
                shutil.rmtree(folder, ignore_errors=True)  # an incomplete folder (files deleted by hand)
            try:
                os.replace(staging, folder)
            except OSError:  # another process put a complete graph there first: keep it
                if not (folder / "complete").exists():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        written = True
    try:
        os.utime(folder / "complete")  # last used: the budget removes the least recently used graphs first
    except OSError:  # a cache on a read-only share still serves its graphs
        pass
    if int8:
        # The cache may outlive the CPU (a home folder shared by machines): the 7-bit graph has its own name.
        reduce_range = int8_products_may_saturate()
        quantised = folder / ("model.int8-7bit.onnx" if reduce_range else "model.int8.onnx")
        if not quantised.exists():
            partial = folder / f".{quantised.stem}.{os.getpid()}.onnx"
            try:
                os.replace(quantize_onnx_int8(graph, partial, reduce_range), quantised)
            finally:
                partial.unlink(missing_ok=True)
            written = True
        graph = quantised
    if written:
        for pruned in prune_onnx_cache(root, budget, keep=folder):
            logger.warning("removed the least recently used ONNX graph %s (budget: %s)", pruned, ONNX_CACHE_MAX_GB_ENV)
    return graph


def _onnxruntime_session(model, onnx_dir: Path | None, threads: int | None, int8: bool):
    """An onnxruntime session of the model's graph: exported into `onnx_dir` where given (always a fresh export),
    else from the graph cache (`onnx_cache_root`), else into a temporary folder kept for the model's lifetime. A
    cached graph that onnxruntime cannot load (a damaged file) is made again, with a warning: a damaged int8 graph is
    quantised again from the exported one; otherwise the model is exported again."""
    import onnxruntime as ort

    from .onnx_export import export_onnx

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()

    def session(path: Path):
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    cache_root = onnx_cache_root()
    if onnx_dir is None and cache_root is not None:
        folder = cache_root / model_fingerprint(model)
        path = _cached_graph(model, folder, int8)
        try:
            return session(path), path
        except Exception as error:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
            failure = f"the cached ONNX graph {path} could not be loaded ({error})"
        if path.name != "model.onnx":  # the int8 graph: quantised again from the exported one, in seconds
            warnings.warn(f"{failure}; quantising it again")
            path.unlink(missing_ok=True)
            try:
                path = _cached_graph(model, folder, int8)
                return session(path), path
            except Exception as error:  # the exported graph is damaged too
                failure = f"the cached ONNX graph in {folder} could not be quantised or loaded ({error})"
        warnings.warn(f"{failure}; exporting it again")
        shutil.rmtree(folder, ignore_errors=True)
        path = _cached_graph(model, folder, int8)
        return session(path), path
    if onnx_dir is None:
        model._onnx_tempdir = tempfile.TemporaryDirectory(prefix="wavlmrawnet-onnx-")  # removed with the model
        onnx_dir = model._onnx_tempdir.name
    path = export_onnx(model, Path(onnx_dir) / "model.onnx", check=False, **ONNX_EXPORT_OPTIONS)
    if int8:
        path = quantize_onnx_int8(path)
    return session(path), path


def _onnxruntime_forward(model, onnx_dir: Path | None, threads: int | None, int8: bool = False):
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("the onnxruntime engine runs on the CPU: load the model with --device cpu")
    session, model.onnx_graph = _onnxruntime_session(model, onnx_dir, threads, int8)

    def forward(input_values, attention_mask=None, labels=None, **kwargs):
        if labels is not None:
            raise ValueError("the onnxruntime engine is for inference: it takes no labels")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_values, dtype=torch.long)
        feeds = {
            "input_values": input_values.detach().float().cpu().numpy(),
            "attention_mask": attention_mask.detach().cpu().numpy().astype(np.int64),
        }
        (embeddings,) = session.run(None, feeds)
        return XVectorOutput(embeddings=_finite(torch.from_numpy(embeddings), "onnxruntime"))

    return forward


def use_engine(
    model,
    engine: str = "torch",
    onnx_dir: str | Path | None = None,
    threads: int | None = None,
    int8: bool = False,
) -> float:
    """Makes `model` (a `WavLMRawNetForXVector` in eval mode) run its forward on `engine`; returns the seconds spent
    preparing it (the ONNX export and session for onnxruntime; torch-compile compiles on its first call instead).

    `onnx_dir`: where the ONNX graph is written. Default: the graph cache (`onnx_cache_root`: a model exported once
    is not exported again; `WAVLMRAWNET_ONNX_CACHE=off` switches it off), else a temporary folder kept for the
    model's lifetime. The graph used is `model.onnx_graph`.
    `threads`: ONNX Runtime's intra-op threads (default: torch's thread count).
    `int8`: onnxruntime only: run the graph's dynamic int8 (`quantize_onnx_int8`). The model is then marked int8
    (`model.int8`), so it refuses training and saving as torch.ao's int8 twin does.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {list(ENGINES)}, got {engine!r}")
    if int8 and engine != "onnxruntime":
        raise ValueError(f"int8 through an engine is onnxruntime's; the {engine} engine runs int8 as torch.ao's twin")
    _check(model)
    start = time.perf_counter()
    if engine == "torch-compile":
        if torch.backends.cpu.get_cpu_capability() == "AVX2" and next(model.parameters()).device.type == "cpu":
            raise ValueError(
                "the torch-compile engine is not available where torch runs AVX2 CPU kernels: with torch 2.13, "
                "inductor's AVX2 code gave NaN embeddings for this model; use the torch or onnxruntime engine"
            )
        model.forward = _compiled_forward(model)
    elif engine == "onnxruntime":
        model.forward = _onnxruntime_forward(model, None if onnx_dir is None else Path(onnx_dir), threads, int8=int8)
        if int8:
            model.int8 = True
    model.engine = engine
    return time.perf_counter() - start


__all__ = [
    "ENGINES",
    "ONNX_CACHE_ENV",
    "ONNX_CACHE_MAX_GB_ENV",
    "model_fingerprint",
    "onnx_cache_max_bytes",
    "onnx_cache_root",
    "onnx_int8_description",
    "prune_onnx_cache",
    "quantize_onnx_int8",
    "use_engine",
]
