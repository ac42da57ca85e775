"""``kubesage build`` and image freshness: the code a step runs is the code in the working tree.

``containers/torch/Dockerfile`` becomes ``kubesage/torch:<tag>``. The build context is the
project root (filtered by ``.dockerignore``); code is copied last, so a code change rebuilds in
seconds. Every image carries the hash of the code it holds (label ``io.kubesage.code``: the
files its Dockerfile copies) and a content tag derived from it (``code-<16 hex>``).

Before a local run (Docker runner, kfp.local, the SageMaker definition executor) ``ensure_fresh``
compares each image's hash with the working tree's and, when they differ, rebuilds the image's
code layer first, with the base and wheel folder set-up chose (remembered by the first
``kubesage build --base ... --wheelhouse ...``: no flags later). Where no rebuild is possible it
stops before any step, saying why and what to do.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import os
import shlex
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from kubesage.dsl.errors import KubesageError
from kubesage.util.atomic import write_atomic

PREFIX = "kubesage/"
WHEEL_PORT = int(os.environ.get("KUBESAGE_WHEEL_PORT", "47291"))
CODE_LABEL = "io.kubesage.code"  # sha256 of the files the image's Dockerfile copies
SETTINGS_FILE = os.path.join(".cache", "kubesage", "build.json")  # in a project, and in ~
_SKIPPED = ("__pycache__", ".git", ".pytest_cache", ".mypy_cache", ".ruff_cache")


class BuildError(KubesageError):
    """An image failed to build."""


class StaleImage(KubesageError):
    """An image holds other code than the working tree, and cannot be rebuilt here."""


@dataclass(frozen=True)
class BuildSettings:
    """How this machine builds images: the base image and a local wheel folder (or none)."""

    base: str | None = None
    wheelhouse: str | None = None


def settings_paths(root: str) -> list[str]:
    """Where build settings are remembered: the project's, then this user's (every project)."""
    home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return [os.path.join(root, SETTINGS_FILE), os.path.join(home, "kubesage", "build.json")]


def load_settings(root: str) -> BuildSettings:
    """The remembered build settings of ``root`` (or of this user); none remembered: defaults."""
    for path in settings_paths(root):
        if os.path.exists(path):
            with open(path) as f:
                doc = json.load(f)
            wheelhouse = doc.get("wheelhouse")
            if wheelhouse and not os.path.isabs(wheelhouse):
                wheelhouse = os.path.join(root, wheelhouse)
            if wheelhouse and not os.path.isdir(wheelhouse):
                wheelhouse = None  # a folder since removed: packages come from the index
            return BuildSettings(doc.get("base"), wheelhouse)
    return BuildSettings()


def save_settings(root: str, settings: BuildSettings) -> None:
    """Remember ``settings`` for ``root`` and, as the default of every project, for this user."""
    doc = json.dumps(asdict(settings), indent=2, sort_keys=True) + "\n"
    for path in settings_paths(root):
        with contextlib.suppress(OSError):  # a read-only home keeps the project's record only
            write_atomic(path, doc)


def image_prefix(root: str) -> str:
    """How the project names its images: ``[tool.kubesage] image_prefix`` in its
    pyproject.toml (``team-vision/``), else ``kubesage/``."""
    import tomllib

    path = os.path.join(root, "pyproject.toml")
    if not os.path.isfile(path):
        return PREFIX
    with open(path, "rb") as f:
        prefix = tomllib.load(f).get("tool", {}).get("kubesage", {}).get("image_prefix", PREFIX)
    return str(prefix).rstrip("/") + "/"


def image_dirs(root: str) -> dict[str, str]:
    """Logical image name -> Dockerfile path, for every folder of ``containers/``."""
    base = os.path.join(root, "containers")
    prefix = image_prefix(root)
    found = {}
    for name in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        dockerfile = os.path.join(base, name, "Dockerfile")
        if os.path.isfile(dockerfile):
            found[prefix + name] = dockerfile
    return found


def copied_sources(dockerfile: str) -> list[str]:
    """The build-context paths the Dockerfile's ``COPY``/``ADD`` instructions copy."""
    sources: list[str] = []
    with open(dockerfile) as f:
        text = f.read().replace("\\\n", " ")
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if len(words) < 3 or words[0].upper() not in ("COPY", "ADD"):
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        if any(w.startswith("--from") for w in words[1:]):
            continue  # from another stage or image, not from the project
        sources += args[:-1]
    return sources


def code_hash(root: str, dockerfile: str) -> str:
    """sha256 of every file the Dockerfile copies from ``root`` (paths and contents), and of
    the Dockerfile itself."""
    digest = hashlib.sha256()
    files = [dockerfile]
    for source in copied_sources(dockerfile):
        path = os.path.join(root, source)
        if os.path.isfile(path):
            files.append(path)
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED)
            files += [os.path.join(dirpath, f) for f in sorted(filenames) if not f.endswith(".pyc")]
    for path in files:
        digest.update(os.fsencode(os.path.relpath(path, root)) + b"\0")
        with open(path, "rb") as f:
            digest.update(hashlib.sha256(f.read()).digest())
    if uses_runtime(dockerfile):  # on kubesage's runtime image: its code is the image's too
        digest.update(package_hash().encode())
    return digest.hexdigest()


@functools.cache
def package_hash() -> str:
    """sha256 of the installed kubesage package's files (what the runtime image holds)."""
    import kubesage

    package = os.path.dirname(os.path.abspath(kubesage.__file__))
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(package):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED)
        for name in sorted(f for f in filenames if not f.endswith(".pyc")):
            path = os.path.join(dirpath, name)
            digest.update(os.fsencode(os.path.relpath(path, package)) + b"\0")
            with open(path, "rb") as f:
                digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()


def content_tag(hash_: str) -> str:
    """The tag naming an image by the code it holds: ``code-<16 hex>``."""
    return f"code-{hash_[:16]}"


@contextlib.contextmanager
def serve_folder(folder: str, port: int = 0) -> Iterator[str]:
    """Serve ``folder`` over HTTP on 127.0.0.1 (a find-links page for pip); yields the URL."""
    handler = functools.partial(_QuietHandler, directory=folder)
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError:  # port taken (another build): any port works, the layer cache misses once
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


RUNTIME = "kubesage/runtime"  # python and the kubesage package: the base of a team's images
_RUNTIME_DOCKERFILE = """\
# kubesage's runtime base image, built by `kubesage build` from the installed kubesage package.
ARG BASE=python:3.11-slim
FROM ${BASE}
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONPATH=/app
WORKDIR /app
COPY kubesage /app/kubesage
# Steps run as a non-root user (uid 1000, group 0: OpenShift's convention for arbitrary users);
# a team's Dockerfile switches to root to install packages, then back.
RUN useradd --uid 1000 --gid 0 --create-home --home-dir /home/kubesage kubesage
USER 1000:0
LABEL io.kubesage.warm-start="1"
ENTRYPOINT ["python", "-m", "kubesage.runtime"]
"""


def runtime_image() -> str:
    """The runtime base image of this kubesage version, ``kubesage/runtime:<version>``."""
    from kubesage import __version__

    return f"{RUNTIME}:{__version__}"


def uses_runtime(dockerfile: str) -> bool:
    """Whether a Dockerfile builds on kubesage's runtime base image."""
    with open(dockerfile) as f:
        return RUNTIME + ":" in f.read()


def build_runtime(settings: BuildSettings, on_line: Callable[[str], None]) -> str:
    """Build (or confirm) ``kubesage/runtime:<version>`` from the installed kubesage package, in
    a context of its own: a team's project needs no copy of kubesage; its ID."""
    import shutil
    import tempfile

    import docker
    import docker.errors

    import kubesage

    package = os.path.dirname(os.path.abspath(kubesage.__file__))
    with tempfile.TemporaryDirectory(prefix="kubesage-runtime-") as context:
        shutil.copytree(package, os.path.join(context, "kubesage"),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        dockerfile = os.path.join(context, "Dockerfile")
        with open(dockerfile, "w") as f:
            f.write(_RUNTIME_DOCKERFILE)
        hash_ = code_hash(context, dockerfile)
        client = docker.from_env()
        with contextlib.suppress(docker.errors.ImageNotFound):
            if (client.images.get(runtime_image()).labels or {}).get(CODE_LABEL) == hash_:
                return str(client.images.get(runtime_image()).id)
        on_line(f"building {runtime_image()} from the installed kubesage package")
        image_id = _docker_build(client, context, "Dockerfile", runtime_image(), hash_,
                                 {"BASE": settings.base} if settings.base else {}, None, on_line,
                                 settings)
        return image_id


def _docker_build(client: Any, context: str, dockerfile: str, ref: str, hash_: str,
                  buildargs: dict[str, str], network: str | None, on_line: Callable[[str], None],
                  settings: BuildSettings) -> str:
    """One ``docker build`` with the code label; its log to ``on_line``; the image ID."""
    image_id = None
    for chunk in client.api.build(path=context, dockerfile=dockerfile, tag=ref,
                                  buildargs=buildargs, network_mode=network, decode=True,
                                  rm=True, forcerm=True,  # no container left by a failed step
                                  labels={CODE_LABEL: hash_}):
        if "stream" in chunk:
            text = chunk["stream"].rstrip()
            if text:
                on_line(text)
        if "aux" in chunk and "ID" in chunk["aux"]:
            image_id = chunk["aux"]["ID"]
        if "error" in chunk:
            raise BuildError(_build_failure(ref, chunk["error"].strip(), settings))
    image = client.images.get(image_id or ref)
    image.tag(*ref.rsplit(":", 1)[:1], content_tag(hash_))
    return str(image.id)


def build_images(
    root: str,
    *,
    tag: str = "latest",
    base: str | None = None,
    wheelhouse: str | None = None,
    only: Iterable[str] | None = None,
    on_line: Callable[[str], None] = print,
) -> dict[str, str]:
    """Build the project's images; returns image tag -> image ID.

    ``base``/``wheelhouse`` given are remembered for later builds (and ``ensure_fresh``); not
    given, the remembered ones are used. Each image is tagged ``tag`` and its content tag.
    """
    import docker

    remembered = load_settings(root)
    settings = BuildSettings(base or remembered.base,
                             os.path.abspath(wheelhouse) if wheelhouse else remembered.wheelhouse)
    if base or wheelhouse:
        save_settings(root, settings)
    if settings.wheelhouse and not os.path.isdir(settings.wheelhouse):
        raise BuildError(f"wheel folder {settings.wheelhouse} does not exist; pass --wheelhouse "
                         "with an existing folder (scripts/setup.sh fills .cache/wheels)")
    wanted = list(only or [])
    client = docker.from_env()
    built = {}
    for name, dockerfile in image_dirs(root).items():
        if wanted and name not in wanted and name.rsplit("/", 1)[-1] not in wanted:
            continue
        ref = f"{name}:{tag}"
        hash_ = code_hash(root, dockerfile)
        buildargs = {"BASE": settings.base} if settings.base else {}
        if uses_runtime(dockerfile):
            build_runtime(settings, on_line)
            buildargs = {}  # its base is the runtime image, which has the base in it
        with contextlib.ExitStack() as stack:
            network = None
            if settings.wheelhouse:
                # A fixed port keeps the build argument, and so the layer cache, stable.
                url = stack.enter_context(serve_folder(settings.wheelhouse, WHEEL_PORT))
                buildargs["PIP_ARGS"] = f"--no-index --find-links {url}"
                network = "host"
            on_line(f"building {ref} from {os.path.relpath(dockerfile, root)}")
            built[ref] = _docker_build(client, root, os.path.relpath(dockerfile, root), ref, hash_,
                                       buildargs, network, on_line, settings)
    if wanted and not built:
        raise BuildError(f"no image named {wanted} under containers/; have: {list(image_dirs(root))}")
    return built


def _build_failure(ref: str, error: str, settings: BuildSettings) -> str:
    unreachable = ("pull access denied", "failed to resolve", "not found", "no such host",
                   "dial tcp", "registry-1.docker.io")
    if any(text in error for text in unreachable):
        base = settings.base or "python:3.11-slim"
        return (f"building {ref} failed: its base image {base} cannot be pulled ({error}); where no "
                "registry is reachable, build a base once (scripts/base-image.sh NAME) and pass "
                "--base NAME (it is remembered)")
    return f"building {ref} failed: {error}"


def ensure_fresh(root: str, logical: Iterable[str], tag: str,
                 say: Callable[[str], None]) -> dict[str, str]:
    """Make every image of ``logical`` that this project builds hold the working tree's code;
    returns image -> code hash. Images the project does not build are left alone."""
    import docker
    import docker.errors

    dirs = image_dirs(root)
    hashes: dict[str, str] = {}
    client = None
    for name in sorted(set(logical)):
        repository = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
        if repository not in dirs:
            continue
        hashes[name] = code_hash(root, dirs[repository])
        ref = name if repository != name else f"{name}:{tag}"
        client = client or docker.from_env()
        try:
            built_with = (client.images.get(ref).labels or {}).get(CODE_LABEL)
        except docker.errors.ImageNotFound:
            built_with = None
            say(f"image {ref} is not built; building it (a first build installs its packages)")
        else:
            if built_with == hashes[name]:
                continue
            say(f"image {ref} " + ("holds other code than the working tree" if built_with
                                   else "predates code labels") + "; rebuilding its code layer")
        start = time.monotonic()
        try:
            build_images(root, tag=ref.rsplit(":", 1)[1], only=[repository],
                         on_line=lambda line: say(f"  [build] {line}"))
        except BuildError as e:
            raise StaleImage(f"image {ref} must be built from the working tree's code, and that "
                             f"failed: {e}") from None
        say(f"image {ref} built in {time.monotonic() - start:.1f}s")
    return hashes


def repository(ref: str) -> str:
    """``host/repo`` of ``host/repo:tag`` (a registry port is not a tag)."""
    return ref.rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref


def content_refs(root: str, logical: Iterable[str]) -> dict[str, str]:
    """Logical image -> ``<image>:code-<16 hex>`` for every image of ``logical`` this project
    builds, naming the working tree's code; refuses (``StaleImage``) when no local image holds
    that code: what is compiled is what was built."""
    import docker
    import docker.errors

    dirs = image_dirs(root)
    found = {}
    client = None
    for name in sorted(set(logical)):
        if repository(name) not in dirs:
            continue  # not built here (a catalog's pinned image, an imported component's own)
        ref = f"{repository(name)}:{content_tag(code_hash(root, dirs[repository(name)]))}"
        client = client or docker.from_env()
        try:
            client.images.get(ref)
        except docker.errors.ImageNotFound:
            raise StaleImage(f"image {repository(name)} for the code being compiled is not built "
                             f"({ref}); run 'kubesage build', then compile again") from None
        found[name] = ref
    return found


def push_images(refs: dict[str, str], remote: dict[str, str],
                on_line: Callable[[str], None]) -> dict[str, str]:
    """Push each local content-tagged image (``refs``: logical -> ``<image>:code-<hash>``) as
    its registry reference (``remote``: logical -> ``<registry>/<image>:code-<hash>``); returns
    logical -> ``<registry>/<image>@sha256:<digest>``."""
    import docker

    client = docker.from_env()
    pushed = {}
    for name, ref in sorted(refs.items()):
        target = remote[name]
        client.images.get(ref).tag(*target.rsplit(":", 1))
        on_line(f"pushing {target}")
        digest = ""
        for chunk in client.images.push(*target.rsplit(":", 1), stream=True, decode=True):
            if "error" in chunk:
                raise BuildError(f"pushing {target} failed: {chunk['error'].strip()}; check that "
                                 "the registry in the target config is right and that you are "
                                 "logged in to it (docker login)")
            digest = chunk.get("aux", {}).get("Digest", digest)
            if chunk.get("status") and chunk.get("id") is None:
                on_line(chunk["status"])
        pushed[name] = f"{repository(target)}@{digest}" if digest else target
    return pushed


def check_pushed(images: Iterable[str]) -> dict[str, str]:
    """Refuse (``StaleImage``) unless every image reference is in its registry; each
    reference's digest there (what a submitted run records, and an exact re-run checks)."""
    import docker

    client = docker.from_env()
    digests = {}
    for ref in sorted(set(images)):
        try:
            digests[ref] = str(client.images.get_registry_data(ref).id)
        except Exception as e:  # NotFound, APIError (no such registry, not logged in)
            raise StaleImage(f"image {ref} is not in its registry ({str(e)[:160]}); push the image "
                             "of the code being submitted with 'kubesage build --push --target "
                             "...', then submit again") from None
    return digests


class ImageMissing(KubesageError):
    """An image a run needs is not on the Docker engine."""


class EngineImages:
    """A run's images on the Docker engine: the working tree's code in each project image
    (``ensure_fresh``), then the ID each reference names now. Nothing is remembered between
    calls: a tag rebuilt since is read again."""

    def __init__(self, root: str, tag: str) -> None:
        self.root = root
        self.tag = tag
        self._client: Any = None

    def _docker(self) -> Any:
        if self._client is None:
            import docker

            try:
                self._client = docker.from_env()
                self._client.ping()
            except Exception as e:  # the SDK raises several types for "no engine"
                raise ImageMissing(f"cannot reach a Docker engine ({e}); start Docker (dockerd)"
                                   " or use --runner subprocess") from None
        return self._client

    def fresh(self, logical: set[str], say: Callable[[str], None]) -> dict[str, str]:
        """Logical image -> code hash, each project image rebuilt first when stale."""
        if not logical:
            return {}
        self._docker()  # a clear error when no engine answers
        return ensure_fresh(self.root, logical, self.tag, say)

    def image_id(self, ref: str) -> str:
        """The ID of the image ``ref`` names now; ``ImageMissing`` when there is none."""
        import docker.errors

        try:
            return str(self._docker().images.get(ref).id)
        except docker.errors.ImageNotFound:
            raise ImageMissing(f"image {ref} is not built; run 'kubesage build' first (or 'docker "
                               f"pull {ref}' for an image kubesage does not build)") from None

    def pins(self, recorded: dict[str, str]) -> dict[str, str]:
        """The recorded image IDs, each checked to exist still."""
        import docker.errors

        for name, image_id in recorded.items():
            try:
                self._docker().images.get(image_id)
            except docker.errors.ImageNotFound:
                raise ImageMissing(f"image {name} ({image_id[:19]}) no longer exists, so the run "
                                   "cannot be reproduced") from None
        return dict(recorded)


def local_image_id(ref: str) -> str:
    """The ID of local image ``ref`` (what ``components publish`` pins by default)."""
    return EngineImages(os.getcwd(), "latest").image_id(ref)


def build_and_push(root: str, *, tag: str, base: str | None, wheelhouse: str | None,
                   only: list[str] | None, on_line: Callable[[str], None],
                   registry_refs: Callable[[dict[str, str]], dict[str, str]] | None = None,
                   ) -> dict[str, str]:
    """``kubesage build``: build the project's images (ref -> image ID); with ``registry_refs``
    (logical -> content tag, to the registry reference of each), push them by content tag and
    add name -> ``<registry>/<image>@sha256:<digest>``."""
    built = build_images(root, tag=tag, base=base, wheelhouse=wheelhouse, only=only,
                         on_line=on_line)
    out = dict(built)
    if registry_refs is not None:
        refs = content_refs(root, [ref.rsplit(":", 1)[0] for ref in built])
        out.update(push_images(refs, registry_refs(refs), on_line))
    return out
