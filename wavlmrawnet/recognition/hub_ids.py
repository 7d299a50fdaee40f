"""Models named by a local folder or a Hub id (`user/repo` or `user/repo@revision`)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["parse_model_id", "resolve_model"]


def parse_model_id(spec: str) -> tuple[str, str | None]:
    """`"user/repo@revision"` -> `("user/repo", "revision")`; no `@`: revision None (the default branch)."""
    repo_id, _, revision = str(spec).partition("@")
    return repo_id, (revision or None)


def resolve_model(name_or_path: str | os.PathLike, revision: str | None = None) -> Path:
    """The local folder of a model: `name_or_path` itself if it is a folder, else the snapshot of the Hub repo it
    names (`user/repo[@revision]`), fetched with `huggingface_hub.snapshot_download`. That honours the Hub cache,
    `HF_HOME` / `HF_HUB_CACHE` and `HF_HUB_OFFLINE=1` (offline, only the cache is read). A `revision` argument
    overrides one given after `@`.

    Errors are `FileNotFoundError`s that say what was tried: a missing folder, an unknown repo, a revision that is not
    cached when offline.
    """
    path = Path(name_or_path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is not a model folder (no config.json)")
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError
    from huggingface_hub.utils import validate_repo_id

    repo_id, at_revision = parse_model_id(str(name_or_path))
    revision = revision or at_revision
    not_found = f"{name_or_path} is not a model folder nor a Hub id (user/repo or user/repo@revision)"
    if path.exists():
        raise FileNotFoundError(f"{name_or_path} is a file, not a model folder")
    if repo_id.count("/") != 1 or str(name_or_path).startswith((".", "/", "~")):
        raise FileNotFoundError(not_found)
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise FileNotFoundError(not_found) from None
    try:
        folder = Path(snapshot_download(repo_id, revision=revision))
    except LocalEntryNotFoundError as error:
        raise FileNotFoundError(
            f"model {repo_id}{'@' + revision if revision else ''} is not in the Hub cache and cannot be downloaded "
            f"(offline: HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', 'unset')}, or no network): {error}"
        ) from None
    except HfHubHTTPError as error:
        where = f"{repo_id} (revision {revision or 'main'})"
        raise FileNotFoundError(f"cannot fetch model {where} from the Hub: {error}") from None
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"Hub repo {repo_id} (revision {revision or 'main'}) has no config.json: not a model")
    return folder
