"""Speaker embeddings and a verification score from an exported ONNX graph, with onnxruntime, numpy and soundfile.

    wavlmrawnet export-onnx --model demo_output/run/final --out model.onnx     # once, where wavlmrawnet is installed
    python onnx_embed.py model.onnx a.wav b.wav                                 # anywhere: no torch, no transformers

The graph takes raw 16 kHz mono audio (zero-padded to the longest clip) and a mask of the real samples; it normalises
each clip itself. Its embeddings are not L2-normalised: normalise them before cosine scoring.
"""

import sys

import numpy as np
import onnxruntime as ort
import soundfile as sf

SAMPLING_RATE = 16000


def read_mono_16k(path: str) -> np.ndarray:
    audio, rate = sf.read(path, dtype="float32", always_2d=True)  # (samples, channels)
    if rate != SAMPLING_RATE:
        raise ValueError(f"{path}: {rate} Hz; resample it to 16 kHz first (e.g. soxr.resample(audio, rate, 16000))")
    return audio.mean(axis=1)  # mono


def embed(session: ort.InferenceSession, paths: list[str]) -> np.ndarray:
    """(len(paths), embedding_dim) L2-normalised embeddings, one batch."""
    clips = [read_mono_16k(path) for path in paths]
    longest = max(len(clip) for clip in clips)
    values = np.zeros((len(clips), longest), dtype=np.float32)
    mask = np.zeros((len(clips), longest), dtype=np.int64)
    for row, clip in enumerate(clips):
        values[row, : len(clip)] = clip
        mask[row, : len(clip)] = 1
    (embeddings,) = session.run(["embeddings"], {"input_values": values, "attention_mask": mask})
    return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)


if __name__ == "__main__":
    model_path, first, second = sys.argv[1:4]
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    a, b = embed(session, [first, second])
    print(f"cosine {float(a @ b):.6f}")
