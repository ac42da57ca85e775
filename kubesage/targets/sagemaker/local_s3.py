"""S3 for local runs of a definition: a folder per bucket under the local run store.

``s3://bucket/key`` is ``<store>/s3/bucket/key`` (a file or a folder). A data mount's S3 data
repository (``mounts.fsx.s3_uri``) resolves to the local config's folder for that mount, so
processing jobs read the same files that training jobs get from "FSx".
"""

from __future__ import annotations

import os
import shutil

from kubesage.dsl.errors import KubesageError


class LocalS3:
    """Maps S3 URIs onto local paths; ``aliases`` maps S3 prefixes onto other folders."""

    def __init__(self, root: str, aliases: dict[str, str] | None = None) -> None:
        self.root = os.path.abspath(root)
        self.aliases = {k.rstrip("/") + "/": v for k, v in (aliases or {}).items()}

    def path(self, uri: str) -> str:
        if not isinstance(uri, str) or not uri.startswith("s3://"):
            raise KubesageError(f"{uri!r} is not an S3 URI (s3://bucket/key)")
        for prefix, folder in self.aliases.items():
            if uri == prefix.rstrip("/") or uri.startswith(prefix):
                return os.path.join(folder, uri[len(prefix):])
        bucket, _, key = uri[len("s3://"):].partition("/")
        return os.path.join(self.root, bucket, *[k for k in key.split("/") if k])

    def exists(self, uri: str) -> bool:
        return os.path.exists(self.path(uri))

    def _writable(self, uri: str) -> str:
        """The local path for a write; a data repository (a user's data folder) is read-only."""
        for prefix, folder in self.aliases.items():
            if uri == prefix.rstrip("/") or uri.startswith(prefix):
                raise KubesageError(
                    f"a step writes to {uri}, inside the data repository {prefix} of a data mount "
                    f"(locally the folder {folder}), which is read-only; give the config's bucket "
                    "and prefix a place outside the data repository")
        return self.path(uri)

    def put_folder(self, source: str, uri: str) -> str:
        """Upload a folder's contents to ``uri`` (replacing what was there); the local path."""
        dest = self._writable(uri)
        tmp = dest.rstrip("/") + ".uploading"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(os.path.dirname(tmp), exist_ok=True)
        shutil.copytree(source, tmp)
        if os.path.isdir(dest):
            shutil.rmtree(dest)
        elif os.path.exists(dest):
            os.remove(dest)
        os.replace(tmp, dest)
        return dest

    def put_file(self, source: str, uri: str) -> str:
        dest = self._writable(uri)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        tmp = dest + ".uploading"
        shutil.copyfile(source, tmp)
        os.replace(tmp, dest)
        return dest
