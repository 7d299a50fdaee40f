"""`bench_model --rawnet-breakdown`: the RawNet branch alone, each stage timed by forward hooks and its
`Fast*` class's time-major entry point, and the stride-1 sinc filter bank as `F.conv1d` against an FFT overlap-save."""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from benchmarks.model.paired import timed_ms
from benchmarks.model.profiling import time_major_entry, timed_method
from benchmarks.model.rows import parse_row
from wavlmrawnet import WavLMRawNetConfig, WavLMRawNetForXVector


def sinc_fft_overlap_save(waveform: torch.Tensor, filters: torch.Tensor, block: int = 4096) -> torch.Tensor:
    """The same valid, stride-1 cross-correlation as `F.conv1d(waveform[:, None], filters)`, by FFT overlap-save."""
    channels, _, kernel = filters.shape
    hop, out_len = block - kernel + 1, waveform.shape[-1] - kernel + 1
    num_blocks = -(-out_len // hop)
    padded = F.pad(waveform, (0, num_blocks * hop + kernel - 1 - waveform.shape[-1]))
    spectra = torch.fft.rfft(padded.unfold(-1, block, hop), block)[:, :, None]  # (B, blocks, 1, F)
    blocks = torch.fft.irfft(spectra * torch.fft.rfft(filters[:, 0].flip(-1), block), block)[..., kernel - 1 :]
    return blocks.permute(0, 2, 1, 3).reshape(waveform.shape[0], channels, -1)[..., :out_len]


def rawnet_breakdown(spec: str, inputs: dict, repeats: int) -> dict[str, float]:
    """Median ms of each RawNet stage (forward hooks), and of the sinc layer as F.conv1d vs FFT overlap-save."""
    preset, overrides = parse_row(spec)
    config = WavLMRawNetConfig.from_preset(preset, num_labels=2, **{**overrides, "use_wavlm_branch": False})
    rawnet = WavLMRawNetForXVector(config).eval().rawnet
    stages = {"sinc conv": rawnet.sinc, "sinc BN": rawnet.sinc_bn}
    stages.update({f"block {i + 1}": block for i, block in enumerate(rawnet.blocks)})
    stages.update({"stats pooling": rawnet.pooling, "FC": rawnet.fc})
    times, starts, depth = {name: [] for name in stages}, {}, dict.fromkeys(stages, 0)

    def start(name):  # a stage may enter itself (a time-major method calling forward): time the outermost call
        depth[name] += 1
        if depth[name] == 1:
            starts[name] = time.perf_counter()

    def stop(name):
        depth[name] -= 1
        if depth[name] == 0:
            times[name].append(time.perf_counter() - starts[name])

    for name, module in stages.items():
        module.register_forward_pre_hook(lambda m, a, name=name: start(name))
        module.register_forward_hook(lambda m, a, o, name=name: stop(name))
        method = time_major_entry(module)  # eval-mode inference enters the stages through these (fast paths on)
        if method is not None:
            setattr(module, method, timed_method(getattr(module, method), name, start, stop))
    waveform, lengths = inputs["input_values"], inputs["attention_mask"].sum(dim=1)
    totals, conv_times, fft_times = [], [], []
    with torch.inference_mode():
        filters = rawnet.sinc.filters()
        reference = F.conv1d(waveform[:, None], filters)
        error = (sinc_fft_overlap_save(waveform, filters) - reference).abs().max() / reference.abs().max()
        rawnet(waveform, lengths)  # warm-up
        for values in times.values():
            values.clear()
        for _ in range(repeats):
            totals.append(timed_ms(lambda: rawnet(waveform, lengths)))
            conv_times.append(timed_ms(lambda: F.conv1d(waveform[:, None], filters)))
            fft_times.append(timed_ms(lambda: sinc_fft_overlap_save(waveform, filters)))
    row = {name: 1000 * statistics.median(values) for name, values in times.items()}
    # Per run, the hooked stages are disjoint parts of the total; the rest is what lies between them.
    rests = [total - 1000 * sum(values[i] for values in times.values()) for i, total in enumerate(totals)]
    row["rest (masks; abs and max-pool where not in the sinc stage)"] = statistics.median(rests)
    row["total"] = statistics.median(totals)
    row["stride-1 sinc: F.conv1d"] = statistics.median(conv_times)
    row["stride-1 sinc: FFT overlap-save"] = statistics.median(fft_times)
    row["FFT max rel. error"] = float(error)
    return row


def format_stage(value: float | None, column: str) -> str:
    if value is None:
        return "-"
    return f"{value:.1e}" if "error" in column else f"{value:.0f}"
