"""``kubesage build``: build the component images from ``containers/<name>/Dockerfile``.

``containers/torch/Dockerfile`` becomes ``kubesage/torch:<tag>``. The build context is the
repository root (filtered by ``.dockerignore``); code is copied last, so a code change
rebuilds in seconds. A local wheel folder can stand in for the package index: it is served on
loopback for the duration of the build.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import threading
from collections.abc import Callable, Iterator

from kubesage.dsl.errors import KubesageError

PREFIX = "kubesage/"
WHEEL_PORT = int(os.environ.get("KUBESAGE_WHEEL_PORT", "47291"))


class BuildError(KubesageError):
    """An image failed to build."""


def image_dirs(root: str) -> dict[str, str]:
    """Logical image name -> Dockerfile path, for every folder of ``containers/``."""
    base = os.path.join(root, "containers")
    found = {}
    for name in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        dockerfile = os.path.join(base, name, "Dockerfile")
        if os.path.isfile(dockerfile):
            found[PREFIX + name] = dockerfile
    return found


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


def build_images(
    root: str,
    *,
    tag: str = "latest",
    base: str | None = None,
    wheelhouse: str | None = None,
    only: list[str] | None = None,
    on_line: Callable[[str], None] = print,
) -> dict[str, str]:
    """Build the images; returns image tag -> image ID."""
    import docker

    client = docker.from_env()
    built = {}
    for name, dockerfile in image_dirs(root).items():
        if only and name not in only and name.removeprefix(PREFIX) not in only:
            continue
        ref = f"{name}:{tag}"
        buildargs = {"BASE": base} if base else {}
        with contextlib.ExitStack() as stack:
            network = None
            if wheelhouse:
                # A fixed port keeps the build argument, and so the layer cache, stable.
                url = stack.enter_context(serve_folder(os.path.abspath(wheelhouse), WHEEL_PORT))
                buildargs["PIP_ARGS"] = f"--no-index --find-links {url}"
                network = "host"
            on_line(f"building {ref} from {os.path.relpath(dockerfile, root)}")
            image_id = None
            for chunk in client.api.build(
                path=root, dockerfile=os.path.relpath(dockerfile, root), tag=ref,
                buildargs=buildargs, network_mode=network, rm=True, decode=True,
            ):
                if "stream" in chunk:
                    text = chunk["stream"].rstrip()
                    if text:
                        on_line(text)
                if "aux" in chunk and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
                if "error" in chunk:
                    raise BuildError(f"building {ref} failed: {chunk['error'].strip()}")
        built[ref] = image_id or client.images.get(ref).id
    if only and not built:
        raise BuildError(f"no image named {only} under containers/; have: {list(image_dirs(root))}")
    return built
