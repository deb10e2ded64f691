"""The model registry: versions on disk (models/<name>/<version>/), which one is promoted (serves by
default), which ones Triton loads. The promoted version and its history live in registry.json, so a
restart (or another replica) serves the same version; a new version directory is loadable at once
(Triton re-reads the repository on every explicit load)."""
from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily

from ferkit import modelrepo
from ferkit.files import write_atomic
from ferkit.vision import ModelMetadata
from services.inference.triton import ModelNotServing, TritonClient, TritonUnavailable

log = logging.getLogger(__name__)
STATE_FILENAME = "registry.json"


class UnknownModel(LookupError):
    """No such model or version in the repository."""


class NoModelDeployed(RuntimeError):
    """The default model has no version at all yet (nothing to serve)."""


@dataclass(frozen=True)
class Version:
    name: str
    version: int
    metadata: ModelMetadata
    metadata_json: str


class PromotedVersions:
    """`inference_model_promoted{model, version} 1` for the version each model serves by default, read
    from the registry's state when Prometheus scrapes: the dashboard shows the served version, and alerts
    join Triton's per-version counters on it. One per process (the server points it at its registry)."""

    registry: "ModelRegistry | None" = None

    def collect(self):
        family = GaugeMetricFamily("inference_model_promoted", "1 for the version each model serves by default.",
                                   labels=["model", "version"])
        if self.registry is not None:
            for name in self.registry.models():
                if version := self.registry.promoted(name):
                    family.add_metric([name, str(version)], 1)
        yield family


PROMOTED_VERSIONS = PromotedVersions()
REGISTRY.register(PROMOTED_VERSIONS)


class ModelRegistry:
    def __init__(self, repository: str | os.PathLike[str], triton: TritonClient, config_name: str = "local",
                 state_dir: str | os.PathLike[str] | None = None, default_model: str = "fer_resnet18",
                 config_dir: str | os.PathLike[str] | None = None) -> None:
        self.repository = Path(repository)
        self.triton = triton
        self.config_name = config_name
        self.config_dir = Path(config_dir) if config_dir else None
        self.state_path = Path(state_dir or repository) / STATE_FILENAME
        self.default_model = default_model
        self._state: dict = {"models": {}}
        self._state_mtime: float | None = None
        self._metadata: dict[tuple[str, int], tuple[float, Version]] = {}
        self._lock = asyncio.Lock()

    # --- state file --------------------------------------------------------------------------

    def _read_state(self) -> dict:
        """registry.json, re-read when another process (a replica, an operator) changed it."""
        try:
            mtime = self.state_path.stat().st_mtime
        except FileNotFoundError:
            return self._state
        if mtime != self._state_mtime:
            try:
                self._state = json.loads(self.state_path.read_text(encoding="utf-8"))
                self._state.setdefault("models", {})
                self._state_mtime = mtime
            except (OSError, json.JSONDecodeError) as exc:
                log.error("%s is unreadable (%s); keeping the last good state", self.state_path, exc)
        return self._state

    def _write_state(self) -> None:
        write_atomic(self.state_path, json.dumps(self._state, indent=2, sort_keys=True))
        self._state_mtime = self.state_path.stat().st_mtime

    def _entry(self, name: str) -> dict:
        return self._read_state()["models"].setdefault(name, {"promoted": None, "history": [], "served": []})

    # --- what is on disk ---------------------------------------------------------------------

    def models(self) -> list[str]:
        if not self.repository.is_dir():
            return []
        return sorted(p.name for p in self.repository.iterdir() if p.is_dir() and modelrepo.list_versions(p))

    def versions(self, name: str) -> list[int]:
        return modelrepo.list_versions(self.repository / name)

    def version(self, name: str, version: int) -> Version:
        """A version's metadata (cached until metadata.json changes); UnknownModel when absent or invalid."""
        try:
            path = modelrepo.version_dir(self.repository, name, version)
        except FileNotFoundError:
            raise UnknownModel(f"model {name!r} has no version {version}") from None
        meta_path = path / modelrepo.METADATA_FILENAME
        try:
            mtime = meta_path.stat().st_mtime
            cached = self._metadata.get((name, version))
            if cached and cached[0] == mtime:
                return cached[1]
            text = meta_path.read_text(encoding="utf-8")
            found = Version(name, version, ModelMetadata.from_dict(json.loads(text)), text)
        except (OSError, ValueError, TypeError) as exc:
            raise UnknownModel(f"model {name!r} version {version} has no usable metadata.json: {exc}") from None
        self._metadata[(name, version)] = (mtime, found)
        return found

    def promoted(self, name: str) -> int | None:
        return self._read_state()["models"].get(name, {}).get("promoted")

    def config_text(self, name: str) -> str:
        """The config Triton serves `name` with: the deployment's own (config_dir), else the repository's."""
        model_dir = self.repository / name
        if self.config_dir is not None:
            path = self.config_dir / f"{name}.pbtxt"
        elif self.config_name:
            path = model_dir / "configs" / f"{self.config_name}.pbtxt"
        else:
            path = model_dir / modelrepo.CONFIG_FILENAME
        try:
            return path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UnknownModel(f"model {name!r} has no Triton config at {path}: {exc}") from None

    # --- serving -----------------------------------------------------------------------------

    async def _serve(self, name: str, versions: list[int]) -> None:
        versions = sorted({v for v in versions if v})
        await self.triton.load(name, self.config_text(name), versions)
        self._entry(name)["served"] = versions

    @staticmethod
    def _served_with(promoted: int, other: int | None) -> list[int]:
        """The promoted version plus at most one more (the one just loaded, or the previous for a
        quick rollback): each served version costs a model instance."""
        return [v for v in dict.fromkeys([promoted, other]) if v][: modelrepo.VERSIONS_SERVED]

    async def bootstrap(self, name: str | None = None) -> int:
        """Make sure the model serves: promote the latest version if none was ever promoted, then
        (re)load what should be served. Called at start and whenever Triton lost the model."""
        name = name or self.default_model
        async with self._lock:
            entry = self._entry(name)
            if not entry.get("promoted"):
                latest = modelrepo.latest_version(self.repository / name)
                if latest is None:
                    raise NoModelDeployed(f"model {name!r} has no versions in {self.repository}")
                self.version(name, latest)
                entry["promoted"] = latest
                log.info("no promoted version of %s on record: promoting the latest, %d", name, latest)
            promoted = entry["promoted"]
            others = [v for v in entry.get("served", []) if v != promoted and v in self.versions(name)]
            await self._serve(name, self._served_with(promoted, others[-1] if others else None))
            self._write_state()
            return promoted

    async def resolve(self, name: str, version: int) -> Version:
        """The version a request means: the promoted one when version is 0."""
        name = name or self.default_model
        if not version:
            version = self.promoted(name) or await self.bootstrap(name)
        return self.version(name, version)

    async def load(self, name: str, version: int) -> Version:
        name = name or self.default_model
        found = self.version(name, version)
        async with self._lock:
            entry = self._entry(name)
            promoted = entry.get("promoted") or version
            await self._serve(name, self._served_with(promoted, version))
            entry["promoted"] = promoted
            self._write_state()
        return found

    async def promote(self, name: str, version: int) -> Version:
        name = name or self.default_model
        found = self.version(name, version)
        async with self._lock:
            entry = self._entry(name)
            previous = entry.get("promoted")
            # Load first: a version that fails to load is never promoted.
            await self._serve(name, self._served_with(version, previous))
            if previous and previous != version:
                entry["history"] = [*entry.get("history", []), previous][-20:]
            entry["promoted"] = version
            self._write_state()
        log.info("promoted %s version %d (was %s)", name, version, previous)
        return found

    async def rollback(self, name: str) -> Version:
        name = name or self.default_model
        async with self._lock:
            entry = self._entry(name)
            history = [v for v in entry.get("history", []) if v in self.versions(name)]
            if not history:
                raise UnknownModel(f"model {name!r} has no earlier promoted version to roll back to")
            target, current = history[-1], entry.get("promoted")
            found = self.version(name, target)
            await self._serve(name, self._served_with(target, current))
            entry["history"] = history[:-1]
            entry["promoted"] = target
            self._write_state()
        log.info("rolled %s back to version %d (from %s)", name, target, current)
        return found

    async def states(self) -> dict[tuple[str, int], str]:
        """Triton's view of every version; empty when Triton is down (versions then read 'unavailable')."""
        try:
            return await self.triton.repository_index()
        except (TritonUnavailable, ModelNotServing):
            return {}
