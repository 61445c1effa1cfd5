"""Fetch one registered adapter version from a Hybrid gateway into a local cache folder, for a
vLLM replica that cannot read the gateway's registry (no shared file system).

The gateway serves each version's files to admin keys (docs/serving.md, "Scale-out"):

    GET /admin/adapters/{name}/versions/{version}/files          the manifest (FILES_FORMAT):
        {"format", "id": "name@version", "name", "version",
         "files": [{"name": "adapter_config.json", "size": 123, "sha256": "<64 hex>"}, ...]}
    GET /admin/adapters/{name}/versions/{version}/files/{file}   one file's bytes

`fetch_version` downloads every file of the manifest into `<cache>/<name>/.<version>.*.partial`,
checks each one's size and sha256 against the manifest, and only then renames the folder to
`<cache>/<name>/<version>`; a file that does not match is refused (`AdapterFetchError`) and
nothing is kept. A cached folder whose files still match the gateway's manifest is used as it
is. `hybrid_lora_resolver` calls it from inside vLLM.

Loaded by vLLM's interpreter, which may be another environment than Hybrid's: standard library
only (tests/serving/test_adapter_fetch.py runs it against the real gateway route).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

FILES_FORMAT = "hybrid-adapter-files/1"
"""The manifest's `format`; the gateway's route (serving/adapters/files.py) writes the same."""
REQUIRED_FILE = "adapter_config.json"
CHUNK_BYTES = 1 << 20
MAX_ERROR_CHARS = 300

ENV_URL = "HYBRID_GATEWAY_URL"
ENV_KEY = "HYBRID_GATEWAY_KEY"
ENV_CACHE = "HYBRID_ADAPTER_CACHE"
ENV_TIMEOUT = "HYBRID_FETCH_TIMEOUT_S"

# The registry's own rules (serving/adapters/registry.py NAME, VERSION): anything else is not a
# version the gateway could have, and could not be a safe folder name either.
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class AdapterFetchError(ValueError):
    """The version could not be fetched or failed its checks. A ValueError, so that vLLM answers
    the request that asked for the adapter with 400 and this message."""


@dataclass(frozen=True)
class FetchSettings:
    """Where a replica fetches adapter versions from, and where it keeps them."""

    gateway_url: str
    """The gateway's root URL, e.g. http://gateway.internal:8080 (without /v1)."""
    api_key: str | None = field(default=None, repr=False)
    """An admin key of that gateway, sent as `Authorization: Bearer <key>`."""
    cache_dir: Path = Path("~/.cache/hybrid/adapters")
    """Fetched versions live in `<cache_dir>/<name>/<version>/`."""
    timeout_s: float = 60.0
    """Per network operation (connect, each read)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FetchSettings | None:
        """The settings in `env` (HYBRID_GATEWAY_URL, HYBRID_GATEWAY_KEY, HYBRID_ADAPTER_CACHE,
        HYBRID_FETCH_TIMEOUT_S); None when HYBRID_GATEWAY_URL is not set.

        Raises:
            AdapterFetchError: a value is unusable (the message names the variable and the fix).
        """
        url = env.get(ENV_URL, "").strip().rstrip("/")
        if not url:
            return None
        problems = []
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            problems.append(f"{ENV_URL}={url!r} is not an http(s) URL (e.g. http://gateway:8080)")
        elif url.endswith("/v1"):
            problems.append(f"{ENV_URL}={url!r} ends in /v1; give the gateway root ({url[:-3]})")
        timeout = env.get(ENV_TIMEOUT, "60")
        try:
            timeout_s = float(timeout)
            if not timeout_s > 0:
                raise ValueError
        except ValueError:
            problems.append(f"{ENV_TIMEOUT}={timeout!r} is not a positive number of seconds")
            timeout_s = 60.0
        if problems:
            raise AdapterFetchError("Hybrid adapter fetch: " + "; ".join(problems))
        cache = env.get(ENV_CACHE, "").strip()
        if cache:
            cache_dir = Path(cache)
        else:
            cache_dir = Path(env.get("XDG_CACHE_HOME") or "~/.cache") / "hybrid" / "adapters"
        return cls(url, env.get(ENV_KEY) or None, cache_dir.expanduser(), timeout_s)


@dataclass(frozen=True)
class RemoteFile:
    name: str
    size: int
    sha256: str


def split_engine_name(engine_name: str) -> tuple[str, str] | None:
    """`name@version` -> (name, version) when it can be a registered version, else None (a
    name the gateway never serves under, e.g. a base model's or another resolver's)."""
    name, at, version = engine_name.partition("@")
    if not at or not _NAME.fullmatch(name) or not _VERSION.fullmatch(version):
        return None
    return name, version


def fetch_version(settings: FetchSettings, engine_name: str) -> Path | None:
    """The local folder of `name@version`, fetched from the gateway unless the cache already
    holds exactly the gateway's files; None when the gateway has no such version.

    Raises:
        AdapterFetchError: the gateway cannot be reached, refuses the key, or sends a manifest
            or a file that does not check out (nothing is kept then).
    """
    parts = split_engine_name(engine_name)
    if parts is None:
        return None
    name, version = parts
    manifest = _get_json(settings, _files_url(settings, name, version), engine_name)
    if manifest is None:
        return None
    files = parse_manifest(manifest, engine_name)
    target = settings.cache_dir / name / version
    if matches(target, files):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{version}.", suffix=".partial"))
    try:
        for remote in files:
            _download(settings, name, version, remote, partial, engine_name)
        _install(partial, target, files)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target


def parse_manifest(manifest: object, engine_name: str) -> list[RemoteFile]:
    """The files of a manifest, every field checked (a file name is a plain name, never a path).

    Raises:
        AdapterFetchError: the manifest is not one this fetcher understands.
    """
    where = f"the gateway's file list for '{engine_name}'"
    if not isinstance(manifest, dict) or manifest.get("format") != FILES_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise AdapterFetchError(
            f"{where} has format {found!r}, not {FILES_FORMAT!r}; use the same Hybrid version "
            "on the gateway and on the replica"
        )
    if manifest.get("id") != engine_name:
        raise AdapterFetchError(f"{where} is for {manifest.get('id')!r}; refused")
    entries = manifest.get("files")
    if not isinstance(entries, list):
        raise AdapterFetchError(f"{where} has no list of files; refused")
    files: list[RemoteFile] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise AdapterFetchError(f"{where} has a file entry that is not an object; refused")
        name, size, sha = entry.get("name"), entry.get("size"), entry.get("sha256")
        if not isinstance(name, str) or not _FILE.fullmatch(name):
            raise AdapterFetchError(
                f"{where} names a file {name!r}, not a plain file name; refused"
            )
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise AdapterFetchError(f"{where} gives {name} the size {size!r}; refused")
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            raise AdapterFetchError(f"{where} gives {name} the sha256 {sha!r}; refused")
        if any(f.name == name for f in files):
            raise AdapterFetchError(f"{where} lists {name} twice; refused")
        files.append(RemoteFile(name, size, sha))
    if not any(f.name == REQUIRED_FILE for f in files):
        raise AdapterFetchError(f"{where} has no {REQUIRED_FILE}: not a LoRA adapter; refused")
    return files


def matches(folder: Path, files: list[RemoteFile]) -> bool:
    """Whether `folder` holds exactly `files` (names, sizes, sha256), nothing more."""
    if not folder.is_dir():
        return False
    present = {p.name for p in folder.iterdir()}
    if present != {f.name for f in files}:
        return False
    for remote in files:
        path = folder / remote.name
        if path.is_symlink() or not path.is_file() or path.stat().st_size != remote.size:
            return False
        if sha256_of(path) != remote.sha256:
            return False
    return True


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _files_url(settings: FetchSettings, name: str, version: str) -> str:
    return f"{settings.gateway_url}/admin/adapters/{name}/versions/{version}/files"


def _open(settings: FetchSettings, url: str, engine_name: str):
    """The open response for GET `url`, or None on 404.

    The key is an unredirected header: a redirect to another host never gets it.
    """
    request = urllib.request.Request(url, method="GET")
    if settings.api_key:
        request.add_unredirected_header("Authorization", f"Bearer {settings.api_key}")
    try:
        return urllib.request.urlopen(request, timeout=settings.timeout_s)
    except urllib.error.HTTPError as exc:
        with exc:
            said = _error_message(exc.read(64 * 1024))
        if exc.code == 404:
            return None
        if exc.code in (401, 403):
            raise AdapterFetchError(
                f"gateway {settings.gateway_url} refused to send '{engine_name}' ({exc.code}: "
                f"{said}); set {ENV_KEY} on the replica to an admin key of that gateway"
            ) from None
        raise AdapterFetchError(
            f"gateway {settings.gateway_url} answered {exc.code} for '{engine_name}' ({said})"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AdapterFetchError(
            f"gateway {settings.gateway_url} did not answer for '{engine_name}' ({reason}); "
            f"check {ENV_URL} on the replica and that the gateway runs"
        ) from None


def _error_message(body: bytes) -> str:
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = body.decode("utf-8", "replace")
    return str(message).strip()[:MAX_ERROR_CHARS] or "no message"


def _get_json(settings: FetchSettings, url: str, engine_name: str) -> object | None:
    response = _open(settings, url, engine_name)
    if response is None:
        return None
    with response:
        body = response.read(1 << 20)
    try:
        return json.loads(body)
    except ValueError:
        raise AdapterFetchError(
            f"gateway {settings.gateway_url} sent a file list for '{engine_name}' that is not "
            f"JSON; is {ENV_URL} the gateway's root URL?"
        ) from None


def _download(
    settings: FetchSettings,
    name: str,
    version: str,
    remote: RemoteFile,
    folder: Path,
    engine_name: str,
) -> None:
    """One file into `folder`, its size and sha256 checked against the manifest."""
    url = f"{_files_url(settings, name, version)}/{urllib.parse.quote(remote.name)}"
    response = _open(settings, url, engine_name)
    if response is None:
        raise AdapterFetchError(
            f"gateway {settings.gateway_url} listed {remote.name} for '{engine_name}' but has no "
            "such file now (the version was removed meanwhile?); refused"
        )
    digest = hashlib.sha256()
    size = 0
    try:
        with response, open(folder / remote.name, "wb") as out:
            while chunk := response.read(CHUNK_BYTES):
                size += len(chunk)
                if size > remote.size:
                    break
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:  # a broken connection, a read timeout, a full disk
        raise AdapterFetchError(
            f"'{engine_name}': {remote.name} could not be fetched from gateway "
            f"{settings.gateway_url} into {folder.parent} ({type(exc).__name__}: {exc}); "
            "nothing was loaded"
        ) from None
    if size != remote.size:
        raise AdapterFetchError(
            f"'{engine_name}': {remote.name} from gateway {settings.gateway_url} has "
            f"{f'more than {remote.size}' if size > remote.size else size} bytes, its file list says "
            f"{remote.size}; refused, nothing was loaded (retry; if it repeats, the file changed "
            "on the gateway after it was listed)"
        )
    if digest.hexdigest() != remote.sha256:
        raise AdapterFetchError(
            f"'{engine_name}': {remote.name} from gateway {settings.gateway_url} has sha256 "
            f"{digest.hexdigest()}, its file list says {remote.sha256}; refused, nothing was "
            "loaded (the file changed on the gateway or in transit)"
        )


def _install(partial: Path, target: Path, files: list[RemoteFile]) -> None:
    """Rename the checked folder into place. Another process may have put the same version
    there first (its files then match and are kept) or an older copy may be in the way (it is
    moved aside and removed)."""
    try:
        partial.rename(target)
        return
    except OSError:
        if matches(target, files):
            shutil.rmtree(partial, ignore_errors=True)
            return
    stale = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.stale")
    with contextlib.suppress(FileNotFoundError):
        target.rename(stale)
    partial.rename(target)
    shutil.rmtree(stale, ignore_errors=True)
