"""ONNX export of WavLMRawNet's speaker embedding: (input_values, attention_mask) -> embeddings, with dynamic batch
and length axes.

    from wavlmrawnet.onnx_export import export_onnx
    path = export_onnx("demo_output/run/final", "model.onnx")

    import onnxruntime as ort
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (embeddings,) = session.run(None, {"input_values": audio_16k_float32, "attention_mask": mask_int64})

`input_values` is raw mono 16 kHz audio (float32 in [-1, 1], zero-padded to the longest row): the graph normalises
each row over its unpadded samples itself (zero mean, unit variance, as the feature extractor does), so a caller needs
only onnxruntime, numpy and an audio reader (the docs' Inference page has the complete example). The graph gives the
RAW fusion output (after the fusion activation), not L2-normalised: normalise it before cosine scoring, as
`WavLMRawNetForXVector.get_embeddings` does.

Two operations of the eager model do not export as written. The wrapper rewrites them, without changing the
results:
- `SincConv.filters()` (`torch.sinc`, `torch.hamming_window`): the TorchScript exporter has no `aten::sinc`
  symbolic, and the dynamo exporter has no translation for `aten.hamming_window`. In eval mode the filter bank
  depends only on the weights, so it is computed once and stored in the graph as a constant.
- `F.max_pool1d` in `RawNetEncoder` / `ResidualBlock`: `torch.export` pins the input length to the example's
  (aten's max_pool1d turns its symbolic sizes into plain ints), so the length axis would not be dynamic. It is
  replaced by the same pooling written as `F.max_pool2d` over a height-1 input.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .layers import SincConv
from .modeling_wavlmrawnet import WavLMRawNetForXVector

INPUT_NAMES = ("input_values", "attention_mask")
OUTPUT_NAMES = ("embeddings",)
# The dynamo exporter writes opset 18 or later. Asking for 17 makes it try to convert the graph down, which fails
# (ReduceMax/ReduceSum axes), and it then writes opset 18 anyway.
MIN_DYNAMO_OPSET = 18
# Weights above this size go to one `<name>.data` file beside the graph (protobuf cannot hold more than 2 GiB).
EXTERNAL_DATA_THRESHOLD_BYTES = 1 << 30


class _ExportableMaxPool1d(TorchFunctionMode):
    """Runs `F.max_pool1d` as `F.max_pool2d` over a height-1 input. The results are the same, and the length stays
    symbolic under `torch.export`. Torch function modes are thread-local, so other threads are not affected."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.max_pool1d or func is torch.max_pool1d:
            return _max_pool1d_as_2d(*args, **kwargs)
        return func(*args, **kwargs)


def _max_pool1d_as_2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    def single(value):
        if isinstance(value, (tuple, list)):
            if len(value) != 1:
                raise ValueError(f"max_pool1d takes one value per argument, got {value!r}")
            return int(value[0])
        return int(value)

    kernel = single(kernel_size)
    step = kernel if stride is None or stride == () or stride == [] else single(stride)
    out = F.max_pool2d(
        input.unsqueeze(-2),
        (1, kernel),
        (1, step),
        (0, single(padding)),
        (1, single(dilation)),
        ceil_mode=ceil_mode,
        return_indices=return_indices,
    )
    if return_indices:  # with height 1 the flat 2-D index equals the 1-D index
        return out[0].squeeze(-2), out[1].squeeze(-2)
    return out.squeeze(-2)


@contextlib.contextmanager
def _frozen_sinc_filters(model: nn.Module, banks: dict[str, torch.Tensor]):
    """Makes each SincConv's `filters()` return the precomputed bank, and restores the method afterwards."""
    modules = dict(model.named_modules())
    patched = []
    try:
        for name, bank in banks.items():
            module = modules[name]
            if "filters" in module.__dict__:
                raise RuntimeError(f"SincConv {name!r} already has its filters patched; is an export already running?")
            module.filters = lambda bank=bank: bank  # instance attribute shadows the method
            patched.append(module)
        yield
    finally:
        for module in patched:
            del module.filters


def normalize_rows(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Zero mean and unit variance per row over its unpadded samples, padding set to 0: the feature extractor's
    `normalize`, in torch, so that it runs inside the exported graph."""
    weights = mask.to(values.dtype)
    count = weights.sum(dim=1, keepdim=True).clamp(min=1.0)
    mean = (values * weights).sum(dim=1, keepdim=True) / count
    variance = (((values - mean) * weights) ** 2).sum(dim=1, keepdim=True) / count
    return (values - mean) / torch.sqrt(variance + eps) * weights


class ExportableEmbeddingModel(nn.Module):
    """`WavLMRawNetForXVector` reduced to (raw audio, attention_mask) -> raw embeddings (B, embedding_dim).

    `normalize` (the feature extractor's `do_normalize`): the input is raw 16 kHz audio, normalised per row inside
    the graph. Use it for export only. It stores the sinc filter banks as they are when it is built, so build it
    after the last weight change. The model must be in eval mode.
    """

    def __init__(self, model: WavLMRawNetForXVector, normalize: bool = True):
        super().__init__()
        if not isinstance(model, WavLMRawNetForXVector):
            raise TypeError(f"expected a WavLMRawNetForXVector, got {type(model).__name__}")
        self.model = model
        self.normalize = normalize
        self._bank_buffers: dict[str, str] = {}  # SincConv module name -> buffer name here
        with torch.no_grad():
            for index, (name, module) in enumerate(
                (name, module) for name, module in model.named_modules() if isinstance(module, SincConv)
            ):
                buffer_name = f"sinc_filters_{index}"
                self.register_buffer(buffer_name, module.filters().detach().clone(), persistent=False)
                self._bank_buffers[name] = buffer_name

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.model.training:
            raise RuntimeError(
                "call .eval() before exporting: training mode would export dropout and batch statistics"
            )
        banks = {name: getattr(self, buffer) for name, buffer in self._bank_buffers.items()}
        if self.normalize:
            input_values = normalize_rows(input_values, attention_mask)
        with _frozen_sinc_filters(self.model, banks), _ExportableMaxPool1d():
            return self.model(input_values, attention_mask=attention_mask, return_dict=True).embeddings


# ----------------------------------------------------------------------------------------------- export
def _load_model(model_or_dir) -> WavLMRawNetForXVector:
    if isinstance(model_or_dir, WavLMRawNetForXVector):
        return model_or_dir
    if isinstance(model_or_dir, (str, os.PathLike)):
        folder = Path(model_or_dir)
        if not folder.is_dir():
            raise FileNotFoundError(f"model folder not found: {folder}")
        return WavLMRawNetForXVector.from_pretrained(folder)
    raise TypeError(
        f"model_or_dir must be a WavLMRawNetForXVector or a folder path, got {type(model_or_dir).__name__}"
    )


def _padded_batch(lengths: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random waveforms of the given lengths, zero-padded, with an int64 attention mask."""
    generator = torch.Generator().manual_seed(seed)
    total = max(lengths)
    values = torch.zeros(len(lengths), total)
    mask = torch.zeros(len(lengths), total, dtype=torch.int64)
    for row, length in enumerate(lengths):
        values[row, :length] = 0.1 * torch.randn(length, generator=generator)
        mask[row, :length] = 1
    return values, mask


def _export_dynamo(wrapper, example, out_path: Path, opset: int, min_samples: int, external_data: bool) -> None:
    batch = torch.export.Dim("batch", min=1)
    samples = torch.export.Dim("samples", min=min_samples)
    dynamic_shapes = {name: {0: batch, 1: samples} for name in INPUT_NAMES}
    # torch.export is called directly: if the length axis were pinned it raises here, whereas torch.onnx.export
    # would silently fall back to a static-shape graph.
    program = torch.export.export(wrapper, example, dynamic_shapes=dynamic_shapes, strict=False)
    torch.onnx.export(
        program,
        example,
        str(out_path),
        input_names=list(INPUT_NAMES),
        output_names=list(OUTPUT_NAMES),
        opset_version=opset,
        dynamo=True,
        external_data=external_data,
        verbose=False,
    )


def _export_torchscript(wrapper, example, out_path: Path, opset: int) -> None:
    axes = {name: {0: "batch", 1: "samples"} for name in INPUT_NAMES}
    axes[OUTPUT_NAMES[0]] = {0: "batch"}
    with warnings.catch_warnings():
        # F.multi_head_attention_forward (WavLM's attention) validates weight and mask shapes with Python `if`s. The
        # tracer warns about each one, but none depends on the batch size or length.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module="torch.nn.functional")
        torch.onnx.export(
            wrapper,
            example,
            str(out_path),
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            opset_version=opset,
            dynamo=False,
            dynamic_axes=axes,
            do_constant_folding=True,
        )


def _move_weights_to_one_file(out_path: Path) -> None:
    """Rewrites the graph with all weights in `<out_path>.data` (the TorchScript exporter writes one file per
    tensor once the model passes 2 GiB)."""
    import onnx
    from onnx.external_data_helper import load_external_data_for_model

    proto = onnx.load(str(out_path), load_external_data=False)
    written_beside = {
        entry.value for tensor in proto.graph.initializer for entry in tensor.external_data if entry.key == "location"
    }
    load_external_data_for_model(proto, str(out_path.parent))
    for name in written_beside:
        (out_path.parent / name).unlink(missing_ok=True)
    onnx.save_model(
        proto,
        str(out_path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=f"{out_path.name}.data",
    )


def check_onnx_interface(path: str | os.PathLike) -> None:
    """Raises if the graph's inputs/outputs are not (input_values, attention_mask) -> embeddings with symbolic
    batch and length axes."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    inputs = [value.name for value in proto.graph.input]
    outputs = [value.name for value in proto.graph.output]
    if inputs != list(INPUT_NAMES) or outputs != list(OUTPUT_NAMES):
        raise RuntimeError(
            f"exported graph has inputs {inputs} and outputs {outputs}; expected {INPUT_NAMES} -> {OUTPUT_NAMES}"
        )
    for value in proto.graph.input:
        dims = value.type.tensor_type.shape.dim
        static = [
            axis for axis in (0, 1) if len(dims) < 2 or dims[axis].HasField("dim_value") or not dims[axis].dim_param
        ]
        if static:
            raise RuntimeError(f"input {value.name!r}: axes {static} were exported static, not dynamic ({dims})")


def _check_against_pytorch(wrapper, path: Path, lengths_per_batch: list[list[int]], atol: float) -> float:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for seed, lengths in enumerate(lengths_per_batch):
        values, mask = _padded_batch(lengths, seed=100 + seed)
        with torch.no_grad():  # PyTorch gets what the feature extractor would give it
            prepared = normalize_rows(values.double(), mask).float() if wrapper.normalize else values
            expected = wrapper.model(prepared, attention_mask=mask).embeddings.numpy()
        (got,) = session.run(None, {"input_values": values.numpy(), "attention_mask": mask.numpy()})
        if got.shape != expected.shape:
            raise RuntimeError(f"ONNX output shape {got.shape} != PyTorch {expected.shape} for lengths {lengths}")
        difference = float(abs(got - expected).max())
        if not difference <= atol:  # also catches NaN
            raise RuntimeError(
                f"ONNX and PyTorch embeddings differ by {difference:.3g} (> {atol}) for lengths {lengths}"
            )
        worst = max(worst, difference)
    return worst


def export_onnx(
    model_or_dir: WavLMRawNetForXVector | str | os.PathLike,
    out_path: str | os.PathLike,
    opset: int = 18,
    check: bool = True,
    *,
    dynamo: bool = True,
    check_atol: float = 1e-4,
    normalize_input: bool | None = None,
) -> Path:
    """Exports the speaker embedding (not L2-normalised) of a WavLMRawNet model to ONNX.

    The graph maps `input_values` (float32, batch x samples: raw 16 kHz mono audio, zero-padded) and
    `attention_mask` (int64, batch x samples, 1 for real samples and 0 for padding) to `embeddings` (float32,
    batch x embedding_dim). Each row is normalised inside the graph (zero mean, unit variance over its unpadded
    samples, as the feature extractor's `do_normalize`), so callers pass audio as read, resampled to 16 kHz. The
    embeddings are the raw fusion output: L2-normalise them before cosine scoring. Batch size and length are
    dynamic. The length range declared to `torch.export` starts at the feature extractor's minimum (0.5 s = 8000
    samples at 16 kHz, or `config.min_input_seconds` if longer). The graph has no such check, and shorter inputs
    down to `config.min_input_samples` give the same results as PyTorch. A padded row's valid length is free. Cast
    the feature extractor's int32 masks to int64.

    Args:
        model_or_dir: a `WavLMRawNetForXVector`, or a folder saved with `save_pretrained`. It is exported in
            eval mode, and its training mode is restored afterwards.
        out_path: the `.onnx` file to write (parent folders are created). Weights over 1 GiB go to
            `<out_path>.data` beside it.
        opset: ONNX opset. The dynamo exporter needs at least 18. The TorchScript exporter also accepts 17.
        check: after export, run `onnx.checker`, then run onnxruntime (CPU) on two batches of shapes different from
            the traced one and compare with PyTorch. Raises if the embeddings differ by more than `check_atol`.
            The graph's input names and dynamic axes are always verified, with or without `check`.
        dynamo: use the `torch.export`-based exporter (default). False uses the legacy TorchScript exporter,
            which is deprecated but exports about 10x faster.
        check_atol: largest allowed absolute difference between ONNX Runtime and PyTorch embeddings.
        normalize_input: normalise each row inside the graph; None follows the feature extractor's
            `do_normalize`. The onnxruntime engine passes False: it feeds what the feature extractor already
            normalised (and long-audio windows of it).

    Returns:
        The path of the written `.onnx` file.
    """
    out_path = Path(out_path)
    if out_path.suffix != ".onnx":
        raise ValueError(f"out_path must end in .onnx, got {out_path}")
    if dynamo and opset < MIN_DYNAMO_OPSET:
        raise ValueError(
            f"the dynamo exporter needs opset >= {MIN_DYNAMO_OPSET}, got {opset} (the TorchScript exporter, "
            "export_onnx(..., dynamo=False), also takes 17)"
        )
    model = _load_model(model_or_dir)
    out_path.parent.mkdir(parents=True, exist_ok=True)

    # The shortest audio the feature extractor lets through (0.5 s, or more if the model needs it). torch.export
    # needs a lower bound anyway: below ~2 WavLM frames it would have to specialise.
    feature_extractor = model.default_feature_extractor()
    min_samples = max(
        math.ceil(feature_extractor.min_seconds * feature_extractor.sampling_rate), model.config.min_input_samples
    )
    example_length = max(16000, 2 * min_samples)
    # Batch 2 with one padded row: torch.export would specialise a size-1 axis, and padding exercises the masks.
    example = _padded_batch([example_length, example_length * 3 // 4], seed=0)
    weight_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    external_data = weight_bytes > EXTERNAL_DATA_THRESHOLD_BYTES

    was_training, fast_paths = model.training, model.fast_paths
    model.eval()
    # transformers' own attention exports; the decomposition of the fast path's SDPA with a float bias fails in
    # torch.export. ONNX Runtime applies its own fusions to the graph.
    model.set_fast_paths(False)
    # Written and checked in a folder beside `out_path`, then renamed into place: a failed export (or check) leaves an
    # earlier graph at `out_path` as it was, and never a partial or unchecked one.
    staging = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.", dir=out_path.parent))
    final_path, out_path = out_path, staging / out_path.name
    try:
        normalize = feature_extractor.do_normalize if normalize_input is None else normalize_input
        wrapper = ExportableEmbeddingModel(model, normalize=normalize).eval()
        if dynamo:
            _export_dynamo(wrapper, example, out_path, opset, min_samples, external_data)
        else:
            _export_torchscript(wrapper, example, out_path, opset)
            if external_data:
                _move_weights_to_one_file(out_path)
        check_onnx_interface(out_path)
        if check:
            import onnx

            try:
                onnx.checker.check_model(str(out_path), full_check=True)  # a path: works with external data too
            except Exception as error:  # onnx's ValidationError and its kin
                raise ValueError(f"the exported graph fails onnx's checker at opset {opset}: {error}") from None
            shorter = max(min_samples, example_length // 3 + 17)
            _check_against_pytorch(
                wrapper,
                out_path,
                [[example_length + 1601], [example_length * 3 // 2, shorter, example_length + 5]],
                check_atol,
            )
        # The weights first, then the graph that names them; a stale weights file must not stay beside a
        # self-contained graph (onnx would append to it on the next export).
        if Path(f"{out_path}.data").exists():
            os.replace(f"{out_path}.data", f"{final_path}.data")
        else:
            Path(f"{final_path}.data").unlink(missing_ok=True)
        os.replace(out_path, final_path)
    finally:
        model.train(was_training)
        model.set_fast_paths(fast_paths)
        shutil.rmtree(staging, ignore_errors=True)
    return final_path


def _main() -> None:
    """python -m wavlmrawnet.onnx_export MODEL_DIR OUT.onnx [--torchscript] [--no-check]"""
    import argparse

    parser = argparse.ArgumentParser(description=_main.__doc__)
    parser.add_argument("model_dir")
    parser.add_argument("out_path")
    parser.add_argument("--opset", type=int, default=18)
    parser.add_argument("--torchscript", action="store_true", help="use the legacy TorchScript exporter")
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    args = parser.parse_args()
    start = time.perf_counter()
    path = export_onnx(args.model_dir, args.out_path, args.opset, check=not args.no_check, dynamo=not args.torchscript)
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    print(f"wrote {path} ({size / 2**20:.1f} MiB) in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    _main()
