"""Publish a saved model folder on the Hugging Face Hub in one commit, with exactly the files a user needs.

    from wavlmrawnet.model_card import write_model_card
    from wavlmrawnet.hub import push_to_hub

    write_model_card("runs/wavlmrawnet/final", repo_id="you/wavlmrawnet-vox1")
    push_to_hub("runs/wavlmrawnet/final", "you/wavlmrawnet-vox1")             # `hf auth login` first, or token=...

What goes up (`upload_file_list`): the weights, config.json, preprocessor_config.json, the remote-code .py files
(`handler.py`, the Inference Endpoints handler, among them), the README.md card, the PNG plots, the results JSON(s),
train_config.yaml and run_info.json, all from the folder's top level.
Training checkpoints, caches, sub-folders and hidden files stay behind. The folder is never modified.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from huggingface_hub import constants, create_repo, upload_folder
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled
from huggingface_hub.repocard import metadata_load
from huggingface_hub.utils import validate_repo_id

from .evaluation.results import EvaluationResults, is_results_json
from .model_card.generator import WEIGHT_FILE

try:  # huggingface_hub >= 1.x exposes its HTTP client (httpx or its fork httpx2) here
    from huggingface_hub.utils import httpx as _http_client
except ImportError:  # pragma: no cover - older layouts
    import httpx as _http_client

__all__ = [
    "DEFAULT_COMMIT_MESSAGE",
    "REMOTE_CODE_FILES",
    "HubConnectionError",
    "push_to_hub",
    "upload_file_list",
    "validate_model_folder",
]

# The files that travel into a saved folder: the four transformers entry points and the handler, and the sibling
# modules they import (transformers copies relative imports with them).
REMOTE_CODE_FILES = (
    "configuration_wavlmrawnet.py",
    "modeling_wavlmrawnet.py",
    "layers.py",  # the network's layers and the tables of parts
    "fast_paths.py",  # the faster computation of the same function, chosen in one place
    "fast_rawnet.py",
    "fast_wavlm.py",
    "cpu_kernels.py",
    "precision.py",  # the compute precision, from the hardware
    "quantization.py",  # int8 inference (precision="int8")
    "feature_extraction_wavlmrawnet.py",
    "audio_io.py",  # reading and resampling audio
    "speech_check.py",  # imported by the pipelines: no speech, no score
    "pipeline_wavlmrawnet.py",
    "handler.py",  # the Inference Endpoints handler
)
REQUIRED_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", *REMOTE_CODE_FILES, "README.md")
UPLOADED_NAMES = {
    "config.json",
    "preprocessor_config.json",
    "README.md",
    "train_config.yaml",
    "run_info.json",
    "model.safetensors.index.json",
}
DEFAULT_COMMIT_MESSAGE = "Upload WavLMRawNet speaker-verification model"
# Errors that mean "the Hub could not be reached" (as opposed to the Hub answering with an error).
CONNECTION_ERRORS = (OfflineModeIsEnabled, ConnectionError, TimeoutError, _http_client.TransportError)


class HubConnectionError(RuntimeError):
    """The Hugging Face Hub could not be reached (offline mode or no network); nothing was committed."""


def _is_uploaded(name: str) -> bool:
    if name.startswith("."):
        return False
    return (
        name in UPLOADED_NAMES
        or WEIGHT_FILE.fullmatch(name) is not None
        or name.endswith((".py", ".png"))
        or is_results_json(name)
    )


def upload_file_list(model_dir: str | os.PathLike) -> list[str]:
    """The files `push_to_hub` uploads from `model_dir`, as sorted names relative to it.

    Only top-level regular files are considered: weights (`model.safetensors` or its shards and index),
    `config.json`, `preprocessor_config.json`, `*.py` (the remote code), `README.md`, `*.png`, `*_results.json`,
    `train_config.yaml` and `run_info.json`. Sub-folders (checkpoints, caches, `__pycache__`) and hidden files are left
    out.
    """
    folder = Path(model_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {folder} does not exist")
    return sorted(p.name for p in folder.iterdir() if p.is_file() and _is_uploaded(p.name))


def validate_model_folder(model_dir: str | os.PathLike) -> Path:
    """Checks that `model_dir` is complete enough to publish; raises `FileNotFoundError` naming every missing file,
    or `ValueError` when README.md has no model-card metadata. Returns the folder as a Path."""
    folder = Path(model_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {folder} does not exist")
    sharded = (folder / "model.safetensors.index.json").is_file()  # stands in for model.safetensors
    missing = [
        name
        for name in REQUIRED_FILES
        if not (folder / name).is_file() and not (name == "model.safetensors" and sharded)
    ]
    if sharded and "model.safetensors" not in missing:
        try:
            shards = set(json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"].values())
        except (ValueError, KeyError, AttributeError) as error:
            index = folder / "model.safetensors.index.json"
            raise ValueError(f"{index} has no readable weight_map: {error}") from error
        missing += sorted(name for name in shards if not (folder / name).is_file())
    if missing:
        hints = []
        if "README.md" in missing:
            hints.append("write the card with wavlmrawnet.model_card.write_model_card (or `wavlmrawnet card`)")
        if set(missing) - {"README.md"}:  # weights, configs or remote code
            hints.append("save the model with WavLMRawNetForXVector.save_pretrained")
        raise FileNotFoundError(
            f"{folder} cannot be published: missing {', '.join(missing)}; {' and '.join(hints)}. Nothing was uploaded."
        )
    # What would publish a broken model or a card without its evidence: every JSON file must parse, and the results
    # files the card states its error rates from must read as results (what `wavlmrawnet card` requires).
    for path in sorted(folder.glob("*.json")):
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as error:
            raise ValueError(f"{path} is not valid JSON ({error}). Nothing was uploaded.") from None
        if is_results_json(path.name):
            try:
                EvaluationResults.read(path)
            except (ValueError, TypeError, KeyError) as error:
                raise ValueError(f"{path} is not a complete results file: {error}. Nothing was uploaded.") from None
    try:
        metadata = metadata_load(folder / "README.md")
    except Exception as error:  # a YAML error in the front matter
        raise ValueError(f"{folder / 'README.md'} has unreadable model-card metadata: {error}") from error
    if not metadata:
        raise ValueError(
            f"{folder / 'README.md'} has no model-card metadata (YAML front matter); write it with "
            "wavlmrawnet.model_card.write_model_card. Nothing was uploaded."
        )
    return folder


def _literal_pattern(name: str) -> str:
    """An fnmatch pattern that matches exactly `name` (upload_folder filters with fnmatch)."""
    return "".join(f"[{c}]" if c in "[]*?" else c for c in name)


def _offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE", "")
    return constants.is_offline_mode() or value.upper() in {"1", "ON", "YES", "TRUE"}


def push_to_hub(
    model_dir: str | os.PathLike,
    repo_id: str,
    private: bool = False,
    dry_run: bool = False,
    token: str | None = None,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
) -> list[str]:
    """Creates `repo_id` on the Hub (if needed) and uploads `upload_file_list(model_dir)` in one commit.

    The folder is validated first (`validate_model_folder`); `dry_run=True` stops there and makes no network call.
    Returns the uploaded (or, for a dry run, the to-be-uploaded) file names.

    Raises:
        FileNotFoundError / ValueError: the folder is incomplete, or `repo_id` is malformed (nothing was sent).
        HubConnectionError (a RuntimeError): offline mode (`HF_HUB_OFFLINE=1`) or no network; nothing was committed.
        RuntimeError: the Hub answered with an error (e.g. not logged in, no write access); nothing was committed.
    """
    folder = validate_model_folder(model_dir)
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"repo_id {repo_id!r} is not a valid Hub repo id ('user/name'): {error}") from error
    files = upload_file_list(folder)
    if dry_run:
        return files
    if _offline():
        raise HubConnectionError(
            f"no connection to the Hugging Face Hub: offline mode is on (HF_HUB_OFFLINE); nothing was uploaded to "
            f"{repo_id}. Unset HF_HUB_OFFLINE and try again."
        )

    repo_created = False
    try:
        create_repo(repo_id, token=token, private=private, repo_type="model", exist_ok=True)
        repo_created = True
        upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            repo_type="model",
            allow_patterns=[_literal_pattern(name) for name in files],
            commit_message=commit_message,
            token=token,
        )
    except CONNECTION_ERRORS as error:
        state = f"the repository {repo_id} exists but no commit was made" if repo_created else "nothing was uploaded"
        raise HubConnectionError(
            f"no connection to the Hugging Face Hub ({type(error).__name__}: {error}); {state}."
        ) from error
    except HfHubHTTPError as error:
        state = f"the repository {repo_id} exists but no commit was made" if repo_created else "nothing was uploaded"
        raise RuntimeError(f"the Hugging Face Hub refused the upload to {repo_id}: {error}; {state}.") from error
    return files
