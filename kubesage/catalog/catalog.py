"""The component catalog: versioned component interfaces that teams share and pin.

A catalog is a folder (a shared file system or a git checkout) or an S3 prefix holding one JSON
document per published version, ``<name>/<version>.json``: the component interface, the image
pinned by ID or digest, a description, who published it and when. Versions are semantic
(``MAJOR.MINOR.PATCH``); a published version never changes, and a breaking change (an input or
output removed or retyped, a new required input) needs a new major version.

A pipeline uses a catalog component by reference, ``use("train@1.2.0")``. The first use records
the version, interface and image in the project's lock file (``kubesage.lock``); later uses
check the catalog against it, and moving to another version checks that it does not break the
locked interface, so the mistake surfaces when the pipeline is compiled, not when it runs.
"""

from __future__ import annotations

import dataclasses
import getpass
import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass
from typing import Any

from kubesage.dsl.component import Component
from kubesage.dsl.errors import KubesageError
from kubesage.dsl.interface import ComponentSpec
from kubesage.util.atomic import write_atomic

CATALOG_ENV = "KUBESAGE_CATALOG"
LOCK_FILE = "kubesage.lock"
VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


class CatalogError(KubesageError):
    """A catalog reference, publication or lock check failed."""


@dataclass(frozen=True)
class Entry:
    """One published version of a component."""

    name: str
    version: str
    description: str
    interface: dict[str, Any]
    image: str  # pinned: an image ID (sha256:...) or repo@sha256:digest
    publisher: str
    published: float
    digest: str = ""  # sha256 of name, version, interface and image: a changed entry shows

    @property
    def spec(self) -> ComponentSpec:
        return ComponentSpec.from_dict({**self.interface, "image": self.image})

    def expected_digest(self) -> str:
        """What ``digest`` must be: the entry's identity, interface and pinned image."""
        doc = {"name": self.name, "version": self.version, "interface": self.interface,
               "image": self.image}
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def breaking_changes(old: ComponentSpec, new: ComponentSpec) -> list[str]:
    """What in ``new`` breaks users of ``old``: removed or retyped inputs/outputs, new required
    inputs. An empty list means ``new`` is a compatible replacement."""
    problems = []
    for kind, old_items, new_items in (
        ("input", old.parameters + old.inputs, new.parameters + new.inputs),  # type: ignore[operator]
        ("output", old.outputs + old.returns, new.outputs + new.returns),  # type: ignore[operator]
    ):
        now = {i.name: i for i in new_items}
        for item in old_items:
            if item.name not in now:
                problems.append(f"{kind} '{item.name}' ({item.type}) was removed")
            elif now[item.name].type != item.type:
                problems.append(f"{kind} '{item.name}' changed type {item.type} -> "
                                f"{now[item.name].type}")
    before = {p.name for p in old.parameters}
    problems += [f"input '{p.name}' ({p.type}) is new and required" for p in new.parameters
                 if p.required and p.name not in before]
    problems += [f"input artifact '{a.name}' ({a.type}) is new" for a in new.inputs
                 if a.name not in {i.name for i in old.inputs}]
    return problems


def _version_key(version: str) -> tuple[int, int, int]:
    m = VERSION_RE.match(version)
    if not m:
        raise CatalogError(f"version '{version}' is not MAJOR.MINOR.PATCH (e.g. 1.2.0)")
    return int(m[1]), int(m[2]), int(m[3])


class _Folder:
    def __init__(self, root: str) -> None:
        self.root = root

    def read(self, key: str) -> str | None:
        path = os.path.join(self.root, key)
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            return f.read()

    def write(self, key: str, text: str) -> None:
        write_atomic(os.path.join(self.root, key), text)  # readable by the other teams

    def keys(self) -> list[str]:
        if not os.path.isdir(self.root):
            return []
        return sorted(os.path.relpath(os.path.join(d, f), self.root)
                      for d, _, files in os.walk(self.root) for f in files if f.endswith(".json"))


class _S3:
    """An S3 prefix; the endpoint comes from boto3's usual settings (``AWS_ENDPOINT_URL``)."""

    def __init__(self, url: str) -> None:
        import boto3

        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.s3 = boto3.client("s3")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def read(self, key: str) -> str | None:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except self.s3.exceptions.NoSuchKey:
            return None
        return str(body.read().decode())

    def write(self, key: str, text: str) -> None:  # a PUT is atomic on S3
        self.s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=text.encode(),
                           ContentType="application/json")

    def keys(self) -> list[str]:
        found = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key("")):
            for obj in page.get("Contents", []):
                key = obj["Key"][len(self._key("")):].lstrip("/")
                if key.endswith(".json"):
                    found.append(key)
        return sorted(found)


class _Database:
    """The team's run store (``sqlite:///...``, ``postgresql://...``): its components table."""

    def __init__(self, url: str) -> None:
        from kubesage.store import RunStore

        self.store = RunStore(url)

    def read(self, key: str) -> str | None:
        name, _, file = key.partition("/")
        return self.store.component(name, file.removesuffix(".json"))

    def write(self, key: str, text: str) -> None:
        name, _, file = key.partition("/")
        doc = json.loads(text)
        if not self.store.publish_component(name, file.removesuffix(".json"), text,
                                            doc.get("publisher", "")):
            raise CatalogError(f"{name}@{file.removesuffix('.json')} was published meanwhile; "
                               "published versions never change, bump the version")

    def keys(self) -> list[str]:
        return [f"{name}/{version}.json" for name, version in self.store.component_versions()]


class Catalog:
    """A shared catalog: a folder path, an ``s3://bucket/prefix`` URL, or a run store's URL
    (``sqlite:///...``, ``postgresql://...``: the team's store). ``default``: where to look
    when neither ``location`` nor ``$KUBESAGE_CATALOG`` says (the command's run store)."""

    def __init__(self, location: str | None = None, default: str = "") -> None:
        location = location or os.environ.get(CATALOG_ENV, "") or default
        if not location:
            raise CatalogError(f"no catalog given; pass --catalog (a folder or s3://bucket/prefix) "
                               f"or set {CATALOG_ENV}")
        self.location = location
        self._store: _Folder | _S3 | _Database
        if location.startswith("s3://"):
            self._store = _S3(location)
        elif location.startswith(("sqlite:", "postgresql:")):
            self._store = _Database(location)
        else:
            self._store = _Folder(location)

    def get(self, name: str, version: str) -> Entry:
        text = self._store.read(f"{name}/{version}.json")
        if text is None:
            have = self.versions(name)
            raise CatalogError(
                f"{name}@{version} is not in catalog {self.location}; "
                + (f"published versions: {', '.join(have)}" if have else f"no '{name}' is published"))
        return _entry(f"{self.location}/{name}/{version}.json", text)

    def versions(self, name: str) -> list[str]:
        found = [k.split("/", 1)[1].removesuffix(".json") for k in self._store.keys()
                 if k.startswith(name + "/")]
        return sorted(found, key=_version_key)

    def list(self) -> list[Entry]:
        """The newest version of every component."""
        newest: dict[str, str] = {}
        for key in self._store.keys():
            name, _, file = key.partition("/")
            version = file.removesuffix(".json")
            if VERSION_RE.match(version) and (
                    name not in newest or _version_key(version) > _version_key(newest[name])):
                newest[name] = version
        return [self.get(n, v) for n, v in sorted(newest.items())]

    def publish(self, component: Component[Any, Any], image: str, publisher: str = "") -> Entry:
        """Publish ``component`` at its version with ``image`` pinned (an ID or digest)."""
        spec = component.spec
        major = _version_key(spec.version)[0]
        if not (image.startswith("sha256:") or "@sha256:" in image):
            raise CatalogError(f"image '{image}' is not pinned; publish with an image ID "
                               "(sha256:...) or a digest (repo@sha256:...)")
        interface = {k: v for k, v in spec.to_dict().items() if k != "image"}
        entry = Entry(spec.name, spec.version, spec.description, interface, image,
                      publisher or getpass.getuser(), time.time())
        entry = dataclasses.replace(entry, digest=entry.expected_digest())
        try:
            existing = self.get(spec.name, spec.version)
        except CatalogError:
            existing = None
        if existing is not None:
            if existing.interface == interface and existing.image == image:
                return existing
            raise CatalogError(f"{spec.name}@{spec.version} is already published with another "
                               "interface or image; published versions never change, bump the "
                               "version")
        same_major = [v for v in self.versions(spec.name) if _version_key(v)[0] == major
                      and _version_key(v) < _version_key(spec.version)]
        if same_major:
            previous = self.get(spec.name, same_major[-1])
            problems = breaking_changes(previous.spec, entry.spec)
            if problems:
                raise CatalogError(
                    f"{spec.name}@{spec.version} breaks {spec.name}@{previous.version}: "
                    f"{'; '.join(problems)}; publish it as {major + 1}.0.0")
        self._store.write(f"{spec.name}/{spec.version}.json", json.dumps(asdict(entry), indent=2,
                                                                          sort_keys=True))
        return entry


def _entry(where: str, text: str) -> Entry:
    """A catalog entry read from ``where``, checked: valid, complete, and unchanged since it was
    published (its digest binds its interface to its pinned image)."""
    fix = "ask its publisher to publish it again as a new version"
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise CatalogError(f"catalog entry {where} is not valid JSON ({e}); {fix}") from None
    fields = {f.name for f in dataclasses.fields(Entry)}
    if not isinstance(doc, dict) or not {"name", "version", "interface", "image"} <= set(doc):
        raise CatalogError(f"catalog entry {where} is not a component entry (it needs name, "
                           f"version, interface and image); {fix}")
    entry = Entry(**{k: v for k, v in doc.items() if k in fields})
    if entry.digest != entry.expected_digest():
        raise CatalogError(f"catalog entry {where} was changed after it was published: its "
                           "interface or image does not match its digest; refusing it; " + fix)
    try:
        _ = entry.spec  # the interface parses
    except (KeyError, TypeError, ValueError) as e:
        raise CatalogError(f"catalog entry {where} has a malformed interface ({e}); {fix}") from None
    return entry


def _lock_path() -> str:
    from kubesage.project.loader import project_root

    return os.path.join(project_root(os.getcwd()), LOCK_FILE)


def _read_lock(path: str) -> dict[str, Any]:
    if not os.path.exists(path):
        return {"components": {}}
    with open(path) as f:
        try:
            doc: dict[str, Any] = json.load(f)
        except json.JSONDecodeError as e:
            raise CatalogError(f"{path}: not valid JSON ({e}); fix or delete it") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("components"), dict):
        raise CatalogError(f"{path}: not a kubesage lock file (it needs a 'components' mapping); "
                           "fix it, or delete it to pin the versions in use again")
    return doc


def _write_lock(path: str, doc: dict[str, Any]) -> None:
    _Folder(os.path.dirname(path)).write(os.path.basename(path),
                                         json.dumps(doc, indent=2, sort_keys=True) + "\n")


def use(ref: str, catalog: str | None = None, lock: str | None = None) -> Component[Any, Any]:
    """A catalog component for a pipeline: ``use("train@1.2.0")``.

    Checks the catalog entry against the lock file (``kubesage.lock`` at the project root), and
    records it there on first use or after a compatible upgrade.
    """
    name, sep, version = ref.partition("@")
    if not sep or not name or not version:
        raise CatalogError(f"'{ref}' is not a catalog reference; write NAME@VERSION, e.g. "
                           "train@1.2.0")
    shared = Catalog(catalog)
    entry = shared.get(name, version)
    lock = lock or _lock_path()
    doc = _read_lock(lock)
    pinned = doc["components"].get(name)
    locked = {"version": entry.version, "image": entry.image, "interface": entry.interface}
    if pinned is not None and pinned != locked:
        if pinned["version"] == entry.version:
            raise CatalogError(
                f"{name}@{version} in {shared.location} differs from "
                f"what {lock} pinned (image {pinned['image'][:19]}); a published version must not "
                "change: ask its publisher, or delete the entry from the lock to accept it")
        old = ComponentSpec.from_dict({**pinned["interface"], "image": pinned["image"]})
        problems = breaking_changes(old, entry.spec)
        if problems:
            raise CatalogError(
                f"component '{name}' version {entry.version} breaks the locked version "
                f"{pinned['version']}: {'; '.join(problems)}; adapt the pipeline to the new "
                f"interface, then remove '{name}' from {lock} to pin {entry.version}")
    if pinned != locked:
        doc["components"][name] = locked
        _write_lock(lock, doc)

    def unavailable(*_: Any, **__: Any) -> Any:
        raise CatalogError(f"catalog component {ref} runs inside pipelines only; its code lives in "
                           f"image {entry.image}")

    return Component(unavailable, entry.spec)


def publishable(ref: str, version: str | None = None) -> Component[Any, Any]:
    """What ``components publish`` publishes: ``FILE.py:COMPONENT`` (its version is its own),
    or a Kubeflow component YAML imported at ``version``."""
    from kubesage.project.loader import load_component

    if ref.endswith((".yaml", ".yml")):
        from kubesage import load_kfp_component

        if not version:
            raise CatalogError(f"{ref}: a Kubeflow component YAML has no version; pass --version X.Y.Z")
        return load_kfp_component(ref, version)
    if version:
        raise CatalogError(f"{ref}: --version is for Kubeflow component YAML; a kubesage "
                           "component declares its version in @component(version=...)")
    return load_component(ref)
