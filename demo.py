"""The main job, `make demo`: build the tiny model, save it, reload it through remote code and verify two clips.

No trained weights exist yet: the score below comes from a randomly initialised model.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from wavlmrawnet import WavLMRawNetConfig, WavLMRawNetForXVector

OUTPUT = Path("demo_output")


def tone(seconds: float, f0: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    audio = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 10)) * 0.2
    return (audio + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def main() -> None:
    torch.manual_seed(0)
    model_dir = OUTPUT / "tiny_model"
    WavLMRawNetForXVector(WavLMRawNetConfig.from_preset("tiny")).save_pretrained(model_dir)
    clips = [OUTPUT / "clip_a.wav", OUTPUT / "clip_b.wav"]
    sf.write(clips[0], tone(2.0, 120, 0), 16000)
    sf.write(clips[1], tone(2.5, 210, 1), 16000)
    # A fresh process, as a user would: AutoModel + the speaker-verification pipeline through remote code.
    script = textwrap.dedent(
        f"""
        from transformers import pipeline
        verify = pipeline("speaker-verification", model={str(model_dir)!r}, trust_remote_code=True)
        print(verify(({str(clips[0])!r}, {str(clips[1])!r})))
        """
    )
    print(f"saved the tiny (untrained) model to {model_dir}; verifying {clips[0]} vs {clips[1]}:")
    subprocess.run([sys.executable, "-c", script], check=True)


if __name__ == "__main__":
    main()
