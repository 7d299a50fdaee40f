"""Debian packages through a private apt configuration: downloaded and unpacked, nothing installed."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    signed_by: str | None  # keyring file, or None (apt's trusted keys)


def parse_apt_sources(text: str, deb822: bool) -> list[AptSource]:
    """The enabled ``deb`` entries of a sources file (one-line ``.list`` or deb822 ``.sources`` format)."""
    sources = []
    if deb822:
        for stanza in re.split(r"\n\s*\n", text):
            fields: dict[str, str] = {}
            last = None
            for line in stanza.splitlines():
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                if line[0] in " \t" and last:  # continuation line
                    fields[last] += "\n" + line.strip()
                    continue
                name, _, value = line.partition(":")
                last = name.strip().lower()
                fields[last] = value.strip()
            if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
                continue
            signed = fields.get("signed-by")
            signed = signed if signed and signed.startswith("/") and "\n" not in signed else None
            for uri in fields.get("uris", "").split():
                sources.append(AptSource(uri.rstrip("/"), tuple(fields.get("suites", "").split()), signed))
        return sources
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        match = re.match(r"^deb\s+(?:\[(?P<options>[^\]]*)\]\s+)?(?P<uri>\S+)\s+(?P<suite>\S+)", line)
        if not match:
            continue
        options = dict(o.split("=", 1) for o in (match["options"] or "").split() if "=" in o)
        signed = options.get("signed-by")
        sources.append(AptSource(match["uri"].rstrip("/"), (match["suite"],), signed if signed else None))
    return sources


def system_apt_sources(etc: Path = Path("/etc/apt")) -> list[AptSource]:
    sources = []
    files = [etc / "sources.list"] + sorted((etc / "sources.list.d").glob("*")) if etc.exists() else []
    for path in files:
        if path.is_file() and path.suffix in (".list", ".sources"):
            sources += parse_apt_sources(path.read_text(encoding="utf-8", errors="replace"), path.suffix == ".sources")
    return sources


def os_codename(os_release: Path = Path("/etc/os-release")) -> str:
    values = dict(line.split("=", 1) for line in os_release.read_text(encoding="utf-8").splitlines() if "=" in line)
    codename = values.get("VERSION_CODENAME", "").strip().strip('"')
    if not codename:
        raise RuntimeError(f"{os_release} names no VERSION_CODENAME; pass --mirror and --suite")
    return codename


def private_sources_list(sources: Sequence[AptSource], codename: str) -> str:
    """Lines for the private sources list: the system's Debian entries for ``codename`` (and ``-updates``) with
    ``main contrib non-free``. Raises RuntimeError when the system lists no such entry."""
    lines = []
    for source in sources:
        for suite in source.suites:
            if suite in (codename, f"{codename}-updates"):
                options = f"[signed-by={source.signed_by}] " if source.signed_by else ""
                line = f"deb {options}{source.uri} {suite} main contrib non-free\n"
                if line not in lines:
                    lines.append(line)
    if not lines:
        raise RuntimeError(
            f"the system's apt sources list no entry for suite {codename!r}; pass --mirror URL (and --suite)"
        )
    return "".join(lines)


def private_apt_config(apt_dir: Path, as_root: bool) -> str:
    """An APT_CONFIG file that keeps apt's sources, lists and cache in ``apt_dir`` and reads the system's dpkg
    status (read-only) so that only packages missing from the system are fetched."""
    lines = [
        f'Dir::State "{apt_dir}/state";',
        f'Dir::State::Lists "{apt_dir}/lists";',
        'Dir::State::status "/var/lib/dpkg/status";',
        f'Dir::Cache "{apt_dir}/cache";',
        f'Dir::Etc::SourceList "{apt_dir}/sources.list";',
        f'Dir::Etc::SourceParts "{apt_dir}/sources.list.d";',
        f'Dir::Etc::Preferences "{apt_dir}/preferences";',
        f'Dir::Etc::PreferencesParts "{apt_dir}/preferences.d";',
        f'Dir::Etc::Parts "{apt_dir}/apt.conf.d";',
        'APT::Get::List-Cleanup "false";',
    ]
    if as_root:  # apt's _apt user could not write into a root-owned cache folder
        lines.append('APT::Sandbox::User "root";')
    return "\n".join(lines) + "\n"


def _run(command: Sequence[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    except FileNotFoundError as error:
        raise RuntimeError(f"{what}: {command[0]} is not installed ({error})") from error
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip()[-2000:]
        raise RuntimeError(f"{what} failed (exit {result.returncode}): {' '.join(command)}\n{tail}")
    return result


class PrivateApt:
    """apt-get / apt-cache / dpkg -x with their own configuration under ``cache_dir``; the system is untouched."""

    def __init__(self, cache_dir: Path, sources_list: str):
        self.dir = Path(cache_dir) / "apt"
        self.root = Path(cache_dir) / "root"  # the packages' files, as dpkg -x unpacks them
        self.debs = Path(cache_dir) / "debs"
        self.manifest = self.root / ".extracted-packages"
        for folder in (
            "state",
            "lists/partial",
            "cache/archives/partial",
            "sources.list.d",
            "preferences.d",
            "apt.conf.d",
        ):
            (self.dir / folder).mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.dir / "sources.list").write_text(sources_list, encoding="utf-8")
        (self.dir / "apt.conf").write_text(private_apt_config(self.dir, os.geteuid() == 0), encoding="utf-8")
        self.env = {**os.environ, "APT_CONFIG": str(self.dir / "apt.conf"), "LC_ALL": "C"}

    def update(self) -> None:
        _run(["apt-get", "update"], "apt-get update (private configuration)", env=self.env)

    def package_names(self, prefix: str) -> list[str]:
        result = _run(["apt-cache", "pkgnames", prefix], "apt-cache pkgnames", env=self.env)
        return sorted(set(result.stdout.split()))

    def packages_to_fetch(self, packages: Sequence[str]) -> list[str]:
        """``packages`` plus every dependency the system lacks (apt-get install --simulate)."""
        result = _run(
            ["apt-get", "install", "--simulate", "--no-install-recommends", *packages],
            "resolving dependencies",
            env=self.env,
        )
        missing = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("Inst ")]
        return sorted(set(missing) | set(packages))

    def extracted(self) -> set[str]:
        return set(self.manifest.read_text().split()) if self.manifest.exists() else set()

    def fetch_and_extract(self, packages: Sequence[str], log: Callable[[str], None] = print) -> None:
        """apt-get download + dpkg -x into ``root`` for the packages not unpacked yet; the .deb files are then
        deleted (the manifest remembers what was unpacked)."""
        done = self.extracted()
        todo = sorted(set(packages) - done)
        if not todo:
            return
        log(f"downloading {len(todo)} Debian packages ...")
        self.debs.mkdir(parents=True, exist_ok=True)
        _run(["apt-get", "download", *todo], "apt-get download", env=self.env, cwd=self.debs)
        for deb in sorted(self.debs.glob("*.deb")):
            _run(["dpkg", "-x", str(deb), str(self.root)], f"unpacking {deb.name}")
            done.add(deb.name.split("_", 1)[0])
            self.manifest.write_text("\n".join(sorted(done)) + "\n")
            deb.unlink()
        not_unpacked = sorted(set(todo) - done)
        if not_unpacked:
            raise RuntimeError(f"apt-get download gave no .deb for: {', '.join(not_unpacked)}")
