"""Optional extras: which `pip install "wavlmrawnet[EXTRA]"` a feature needs, and the error that says so.

The core install runs inference (`import wavlmrawnet`, both pipelines, `wavlmrawnet embed`/`verify`/`enroll`/
`identify`/`calibrate`); training, evaluation plots, the model card, ONNX, VAD, the Space and m4a input each need an
extra, listed in pyproject.toml. `require("train")` is called where such a feature starts, so a missing extra stops it
with one line that names the extra rather than an ImportError from deep inside.
"""

from __future__ import annotations

import importlib
import importlib.util

# extra -> the import names it provides that the package's code needs (pyproject.toml lists the distributions).
EXTRAS: dict[str, tuple[str, ...]] = {
    "train": ("accelerate", "datasets", "pydantic", "yaml", "tensorboard", "matplotlib", "jinja2"),
    "eval": ("matplotlib", "jinja2", "yaml"),
    "onnx": ("onnx", "onnxruntime", "onnxscript"),
    "vad": ("silero_vad",),
    "space": ("gradio", "gradio_client"),
    "m4a": ("av",),
    "diarize": ("silero_vad", "sklearn", "spectralcluster", "pyannote.metrics"),
}


class MissingExtraError(ImportError):
    """A feature needs an optional extra that is not installed; the message names the pip command."""

    def __init__(self, extra: str, missing: list[str], feature: str | None = None):
        self.extra, self.missing = extra, missing
        what = feature or "this feature"
        super().__init__(
            f'{what} needs the "{extra}" extra: pip install "wavlmrawnet[{extra}]" (in a clone: pip install -e '
            f'".[{extra}]"; missing: {", ".join(missing)})'
        )


def missing_modules(extra: str) -> list[str]:
    """The import names of `extra` that cannot be found (nothing is imported)."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; known: {sorted(EXTRAS)}")
    return [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]


def require(extra: str, feature: str | None = None) -> None:
    """Raises `MissingExtraError` naming `extra` if any of its modules is missing."""
    missing = missing_modules(extra)
    if missing:
        raise MissingExtraError(extra, missing, feature)


def import_module(name: str, extra: str, feature: str | None = None):
    """`importlib.import_module(name)`, or `MissingExtraError` naming `extra` when `name` is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        if error.name is None or error.name.split(".")[0] != name.split(".")[0]:
            raise  # the module is there but something it imports broke: not a missing extra
        raise MissingExtraError(extra, [name], feature) from None


__all__ = ["EXTRAS", "MissingExtraError", "import_module", "missing_modules", "require"]
