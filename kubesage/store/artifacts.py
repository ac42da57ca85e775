"""Where a team's artifacts are shared, and this machine's content-addressed cache of them.

Steps always read and write local folders (containers bind-mount them). Once a step's output is
committed it is *published* to the artifact store, by content: ``<base>/sha256/<sha256>/...``,
its ``.complete`` marker written last, so a half-uploaded artifact never looks whole. A step
that needs an artifact that is not on this machine (a cache hit on a colleague's step, a run
continued elsewhere) *fetches* it into ``<home>/cache/sha256/<sha256>``, checked against its
sha256 and renamed into place: a repeated read downloads nothing.

- a local folder (the default, ``<home>/artifacts``): artifacts already are where they live;
- a shared folder (a team's FSx mount, say): published by copy, fetched by copy;
- ``s3://BUCKET/PREFIX``: boto3, which honours ``$AWS_ENDPOINT_URL`` (moto in the tests).

Step logs are published beside them (``logs/<run>/<step>/log.txt``), and so are the checkpoints
of a step that did not finish (``checkpoints/<cache key>/``): the identical step resumes from
them on any machine of the team, as a spot-interrupted job does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Any, Protocol
from urllib.parse import urlsplit

from kubesage.dsl.errors import KubesageError
from kubesage.runs.artifacts import sha256_tree

COMPLETE = ".complete"


class ArtifactStoreError(KubesageError):
    """An artifact cannot be published or fetched (the store unreachable, a bucket missing)."""


class ArtifactStore(Protocol):
    """Publishing and fetching artifacts by content."""

    url: str
    shared: bool  # False: artifacts stay where steps wrote them (the local default)

    def publish(self, folder: str, sha256: str) -> str:
        """Make ``folder`` (content ``sha256``) available to the team; its URI."""
        ...

    def fetch(self, uri: str, sha256: str) -> str:
        """A local folder holding the artifact ``uri`` (from the cache when it is there)."""
        ...

    def publish_file(self, path: str, key: str) -> str:
        """Publish one file (a step's log) under ``key``; its URI."""
        ...

    def sync_up(self, folder: str, key: str) -> None:
        """Copy ``folder`` (a step's checkpoints) to ``key``, replacing what was there."""
        ...

    def sync_down(self, key: str, folder: str) -> int:
        """Copy what is under ``key`` into the empty ``folder``; how many files."""
        ...

    def read_file(self, uri: str) -> bytes:
        """The content of one file ``publish_file`` published (a step's log)."""
        ...


def cached_path(home: str, sha256: str) -> str:
    """Where this machine's cache (under the local folder ``home``) keeps artifact ``sha256``."""
    return os.path.join(os.path.abspath(home), "cache", "sha256", sha256)


def open_artifacts(url: str, home: str) -> ArtifactStore:
    """The artifact store at ``url`` (a folder or ``s3://``); ``home`` holds the local cache."""
    cache = os.path.dirname(cached_path(home, "-"))
    if url.startswith("s3://"):
        return S3Artifacts(url, cache)
    if "://" in url:
        raise ArtifactStoreError(f"artifacts '{url}' is not a folder or s3://BUCKET/PREFIX; fix "
                                 "artifacts: in config/local.yaml (or $KUBESAGE_ARTIFACTS)")
    folder = os.path.abspath(url)
    local = os.path.abspath(os.path.join(home, "artifacts"))
    if folder == local:
        return LocalArtifacts(folder)
    return FolderArtifacts(folder, cache)


class LocalArtifacts:
    """Artifacts stay in this machine's run folders; nothing is copied."""

    shared = False

    def __init__(self, folder: str) -> None:
        self.url = folder

    def publish(self, folder: str, sha256: str) -> str:
        return folder

    def fetch(self, uri: str, sha256: str) -> str:
        if not os.path.exists(uri):
            raise ArtifactStoreError(f"artifact {uri} is gone from this machine; run its step "
                                     "again (kubesage run --no-cache, or rerun --from-failed)")
        return uri

    def publish_file(self, path: str, key: str) -> str:
        return path

    def sync_up(self, folder: str, key: str) -> None:
        """Checkpoints stay in this machine's folder."""

    def sync_down(self, key: str, folder: str) -> int:
        return 0

    def read_file(self, uri: str) -> bytes:
        return _read(uri)


class _Cached:
    """The local content-addressed cache a shared store fetches into."""

    def __init__(self, cache: str) -> None:
        self.cache = cache

    def _fetch(self, sha256: str, download: Any) -> str:
        final = os.path.join(self.cache, sha256)
        if os.path.isdir(final):
            return final
        os.makedirs(self.cache, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{sha256[:12]}.", dir=self.cache)
        try:
            download(tmp)
            got = sha256_tree(tmp)
            if got != sha256:
                raise ArtifactStoreError(f"artifact {sha256[:12]} fetched with content {got[:12]}: "
                                         "the artifact store holds something else under its "
                                         "name; publish it again (rerun the step that made it)")
            with contextlib.suppress(OSError):  # another process put it there first: the same
                os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final


class FolderArtifacts(_Cached):
    """A shared folder (an FSx mount, say) every engineer's machine can read and write."""

    shared = True

    def __init__(self, folder: str, cache: str) -> None:
        super().__init__(cache)
        self.url = folder

    def publish(self, folder: str, sha256: str) -> str:
        final = os.path.join(self.url, "sha256", sha256)
        if os.path.exists(os.path.join(final, COMPLETE)):
            return final
        os.makedirs(os.path.dirname(final), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{sha256[:12]}.", dir=os.path.dirname(final))
        try:
            shutil.copytree(folder, tmp, dirs_exist_ok=True)
            open(os.path.join(tmp, COMPLETE), "w").close()
            try:
                os.rename(tmp, final)
            except OSError:  # published meanwhile by another process
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final

    def fetch(self, uri: str, sha256: str) -> str:
        if not os.path.exists(os.path.join(uri, COMPLETE)):
            raise ArtifactStoreError(f"artifact {uri} is not in the shared folder (or not whole)")

        def copy(tmp: str) -> None:
            shutil.copytree(uri, tmp, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns(COMPLETE))

        return self._fetch(sha256, copy)

    def publish_file(self, path: str, key: str) -> str:
        target = os.path.join(self.url, key)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(path, target + ".tmp")
        os.replace(target + ".tmp", target)
        return target

    def sync_up(self, folder: str, key: str) -> None:
        target = os.path.join(self.url, key)
        tmp = target.rstrip("/") + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(folder, tmp)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)

    def sync_down(self, key: str, folder: str) -> int:
        source = os.path.join(self.url, key)
        if not os.path.isdir(source):
            return 0
        shutil.copytree(source, folder, dirs_exist_ok=True)
        return len(_files(folder))

    def read_file(self, uri: str) -> bytes:
        return _read(uri)


class S3Artifacts(_Cached):
    """``s3://BUCKET/PREFIX``; boto3 finds credentials and ``$AWS_ENDPOINT_URL`` itself."""

    shared = True

    def __init__(self, url: str, cache: str) -> None:
        super().__init__(cache)
        parts = urlsplit(url)
        if not parts.netloc:
            raise ArtifactStoreError(f"artifacts '{url}' names no bucket; write s3://BUCKET/PREFIX")
        self.url = url.rstrip("/")
        self.bucket, self.prefix = parts.netloc, parts.path.strip("/")
        self._client: Any = None

    def _s3(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def _call(self, what: str, work: Any) -> Any:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return work()
        except (ClientError, Boto3Error) as e:
            code = e.response.get("Error", {}).get("Code", "") if isinstance(e, ClientError) else ""
            if code == "NoSuchBucket" or "NoSuchBucket" in str(e):
                raise ArtifactStoreError(f"{what}: bucket {self.bucket} does not exist; create it "
                                         "or fix artifacts: in config/local.yaml") from None
            raise ArtifactStoreError(f"{what}: S3 answered {code or str(e)[:200]}") from None
        except BotoCoreError as e:
            raise ArtifactStoreError(f"{what}: S3 at {self.url} unreachable ({e}); "
                                     "'kubesage rerun --from-failed' continues once it answers") from None

    def publish(self, folder: str, sha256: str) -> str:
        base = self._key("sha256", sha256)
        uri = f"s3://{self.bucket}/{base}"
        s3 = self._s3()

        def upload() -> None:
            try:
                s3.head_object(Bucket=self.bucket, Key=f"{base}/{COMPLETE}")
                return  # published before, by this machine or another
            except Exception as e:  # 404: not there yet
                if getattr(e, "response", {}).get("Error", {}).get("Code") not in ("404", "NoSuchKey"):
                    raise
            for path in _files(folder):
                s3.upload_file(path, self.bucket, f"{base}/{os.path.relpath(path, folder)}")
            s3.put_object(Bucket=self.bucket, Key=f"{base}/{COMPLETE}", Body=b"")

        self._call(f"publishing artifact {sha256[:12]} to {uri}", upload)
        return uri

    def fetch(self, uri: str, sha256: str) -> str:
        parts = urlsplit(uri)
        bucket, base = parts.netloc, parts.path.strip("/")
        s3 = self._s3()

        def download(tmp: str) -> None:
            def work() -> None:
                keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
                    Bucket=bucket, Prefix=base + "/") for o in page.get("Contents", [])]
                if f"{base}/{COMPLETE}" not in keys:
                    raise ArtifactStoreError(f"artifact {uri} is not in S3 (or not whole)")
                for key in keys:
                    rel = key[len(base) + 1:]
                    if rel == COMPLETE:
                        continue
                    target = os.path.join(tmp, rel)
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    s3.download_file(bucket, key, target)

            self._call(f"fetching artifact {uri}", work)

        return self._fetch(sha256, download)

    def publish_file(self, path: str, key: str) -> str:
        full = self._key(key)
        self._call(f"publishing {key}", lambda: self._s3().upload_file(path, self.bucket, full))
        return f"s3://{self.bucket}/{full}"

    def _keys(self, prefix: str) -> list[str]:
        s3 = self._s3()
        return [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix) for o in page.get("Contents", [])]

    def sync_up(self, folder: str, key: str) -> None:
        base = self._key(key).rstrip("/") + "/"
        s3 = self._s3()

        def work() -> None:
            wanted = {f"{base}{os.path.relpath(p, folder)}": p for p in _files(folder)}
            for stale in set(self._keys(base)) - set(wanted):
                s3.delete_object(Bucket=self.bucket, Key=stale)
            for target, path in sorted(wanted.items()):
                s3.upload_file(path, self.bucket, target)

        self._call(f"saving checkpoints to s3://{self.bucket}/{base}", work)

    def sync_down(self, key: str, folder: str) -> int:
        base = self._key(key).rstrip("/") + "/"
        s3 = self._s3()

        def work() -> int:
            keys = self._keys(base)
            for k in keys:
                target = os.path.join(folder, k[len(base):])
                os.makedirs(os.path.dirname(target), exist_ok=True)
                s3.download_file(self.bucket, k, target)
            return len(keys)

        return int(self._call(f"reading checkpoints from s3://{self.bucket}/{base}", work))

    def read_file(self, uri: str) -> bytes:
        parts = urlsplit(uri)
        return bytes(self._call(f"reading {uri}", lambda: self._s3().get_object(
            Bucket=parts.netloc, Key=parts.path.lstrip("/"))["Body"].read()))


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ArtifactStoreError(f"{path}: {e.strerror}; the file is not on this machine") from None


def _files(folder: str) -> list[str]:
    if os.path.isfile(folder):
        return [folder]
    return sorted(os.path.join(d, f) for d, _, files in os.walk(folder) for f in files)
