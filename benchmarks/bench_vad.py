"""Silence removal (`vad=True`) on the demo model: how much padding a clip with 5 s of silence or of low noise on
each side changes its embedding, with VAD off and on, and the EER of the test trials with that padding inserted.

Needs `make demo` first (demo_output/run/final and its corpus). Writes the padded copies of the 200 test files to a
temporary folder.

    python -m benchmarks.bench_vad [--model demo_output/run/final] [--markdown-out FILE]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from benchmarks.common import machine_caption, markdown_table, publish
from wavlmrawnet import WavLMRawNetForXVector
from wavlmrawnet.evaluation import compute_metrics, read_trials, score_trials, unique_paths
from wavlmrawnet.evaluation.embedding import embed_files
from wavlmrawnet.evaluation.trials import Trial

PAD_SECONDS = 5.0
NOISE_RMS = 0.003  # about -50 dBFS white noise


def padded_copies(paths: list[str], folder: Path, kind: str) -> dict[str, str]:
    """Each file with PAD_SECONDS of digital silence or of low noise before and after it."""
    rng = np.random.default_rng(0)
    copies = {}
    for index, path in enumerate(paths):
        audio, rate = sf.read(path, dtype="float32")
        size = int(PAD_SECONDS * rate)
        pads = [np.zeros(size, np.float32) for _ in range(2)]
        if kind == "low noise":
            pads = [(NOISE_RMS * rng.standard_normal(size)).astype(np.float32) for _ in range(2)]
        copies[path] = str(folder / f"{kind.replace(' ', '_')}_{index:04d}.wav")
        sf.write(copies[path], np.concatenate([pads[0], audio, pads[1]]), rate, subtype="FLOAT")
    return copies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo_output/run/final")
    parser.add_argument("--corpus", default="demo_output/corpus")
    parser.add_argument("--markdown-out", help="also write the report here")
    args = parser.parse_args()

    model = WavLMRawNetForXVector.from_pretrained(args.model).eval()
    extractor = model.default_feature_extractor()
    trials = read_trials(Path(args.corpus) / "test" / "veri_test2.txt", root=Path(args.corpus) / "test" / "wav")
    labels = np.array([t.label for t in trials])
    paths = unique_paths(trials)

    def embed(files, vad):
        result = embed_files(model, extractor, files, precision="fp32", progress=False, vad=vad)
        result.raise_for_failures()
        return result.embeddings

    clean = {vad: embed(paths, vad) for vad in (False, True)}
    change_rows, eer_rows = [], []
    for vad in (False, True):
        eer = compute_metrics(score_trials(trials, clean[vad]), labels)["eer_percent"]
        eer_rows.append(["none", "on" if vad else "off", f"{eer:.2f}"])
    with tempfile.TemporaryDirectory() as folder:
        for kind in ("silence", "low noise"):
            copies = padded_copies(paths, Path(folder), kind)
            for vad in (False, True):
                embeddings = embed(list(copies.values()), vad)
                # Change against the clean clip embedded the same way (VAD on or off).
                cosines = np.array([float(clean[vad][p] @ embeddings[copies[p]]) for p in paths])
                change_rows.append([kind, "on" if vad else "off", f"{np.mean(cosines):.4f}", f"{np.min(cosines):.4f}"])
                padded_trials = [Trial(t.label, copies[t.enroll], copies[t.test]) for t in trials]
                by_copy = {copies[p]: embeddings[copies[p]] for p in paths}
                eer = compute_metrics(score_trials(padded_trials, by_copy), labels)["eer_percent"]
                eer_rows.append([f"{PAD_SECONDS:g} s of {kind} each side", "on" if vad else "off", f"{eer:.2f}"])
    report = (
        f"{machine_caption()}. Model {args.model} (fp32), {len(paths)} test files, {len(trials)} trials; low noise is "
        f"white noise at RMS {NOISE_RMS} (about -50 dBFS).\n\n"
        f"Cosine between each clip's embedding and its padded copy's ({PAD_SECONDS:g} s each side):\n\n"
        + markdown_table(["padding", "VAD", "mean cosine", "lowest cosine"], change_rows)
        + "\n\nEER of the test trials, every file padded:\n\n"
        + markdown_table(["padding", "VAD", "EER %"], eer_rows)
    )
    publish(report, args.markdown_out)


if __name__ == "__main__":
    main()
