"""The local target config: where data mounts come from, where runs are stored, image tags.

```yaml
# config/local.yaml (paths relative to this file)
mounts:
  fsx: ../data/fsx      # bind-mounted read-only at the path the component declares (/fsx)
store: ../.kubesage     # this machine's folder: the run store (runs.db), artifacts, logs, ...
# A team's shared store instead (or $KUBESAGE_STORE): the run store is a URL, and `home` is
# this machine's folder (kfp.local runs, checkpoints, logs, the artifact cache):
#   store: postgresql://kubesage@db.internal:5432/kubesage   (password: $PGPASSWORD or a file)
#   home: ../.kubesage
artifacts: s3://team-bucket/kubesage  # or a (shared) folder; default: <store folder>/artifacts
image_tag: latest       # kubesage/torch -> kubesage/torch:latest
parallelism: 4          # steps running at once
mlflow_tracking_uri: sqlite:////abs/path/mlflow.db   # default: <store>/mlflow/mlflow.db
mlflow_autolog: true    # hand each ended run to MLflow in the background (false: only
                        # `kubesage experiments RUN` logs it)
webhooks: [https://hooks.slack.com/services/...]      # run and step state changes
gpus: auto              # steps that want GPUs: auto (if the engine has some, else CPU) | all | none
console_token_file: ~/.kubesage-console-token   # the token of `kubesage ui`'s actions
```
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kubesage.config.reader import ConfigError, ConfigReader  # ConfigError: this target's error
from kubesage.runs.step_user import RUN_AS_GID, RUN_AS_UID

if TYPE_CHECKING:
    from kubesage.dsl.pipeline import Pipeline

DEFAULT_PATH = os.path.join("config", "local.yaml")


@dataclass
class LocalConfig:
    """Settings of local runs; nothing here is part of a pipeline."""

    mounts: dict[str, str] = field(default_factory=dict)
    store: str = ".kubesage"  # this machine's folder (the embedded run store is runs.db in it)
    database: str = ""  # the run store's URL; "" is sqlite:///<store>/runs.db
    artifacts: str = ""  # a folder or s3://BUCKET/PREFIX; "" is <store>/artifacts
    image_tag: str = "latest"
    parallelism: int = 4
    # Start a step's container (and its heavy imports) while its upstream steps still run; each
    # waiting container holds its imports in memory (torch: some hundred MB).
    warm_start: bool = True
    mlflow_tracking_uri: str = ""
    # Each ended run goes to MLflow by a background process (an MLflow import: some CPU-seconds
    # a run); off, a run is logged only when `kubesage experiments RUN` asks.
    mlflow_autolog: bool = True
    webhooks: list[str] = field(default_factory=list)
    # Steps that declare GPUs, in Docker: ``auto`` requests them when the engine has GPUs and
    # otherwise runs them on CPU (said once in the run log); ``all`` always requests them (a run
    # on an engine without GPUs is refused); ``none`` never does.
    gpus: str = "auto"
    # a file holding the token `kubesage ui` asks of actions (and of every request beyond
    # loopback); the token itself never sits in a config that is committed
    console_token_file: str = ""
    source: str = "(defaults)"

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI: the configured one, else a SQLite store in the run store."""
        return self.mlflow_tracking_uri or "sqlite:///" + os.path.join(
            os.path.abspath(self.store), "mlflow", "mlflow.db")

    @property
    def store_url(self) -> str:
        """The run store: ``database``, else the embedded SQLite file in ``store``."""
        return self.database or "sqlite:///" + os.path.join(os.path.abspath(self.store), "runs.db")

    @property
    def artifacts_url(self) -> str:
        """Where artifacts are shared: ``artifacts``, else ``<store>/artifacts``."""
        return self.artifacts or os.path.join(os.path.abspath(self.store), "artifacts")

    @property
    def source_file(self) -> str:
        """The config file read (absolute), or "" for the defaults."""
        return "" if self.source == "(defaults)" else os.path.abspath(self.source)

    def image(self, name: str) -> str:
        """Local tag for a logical image name."""
        return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:{self.image_tag}"


_KEYS = ("mounts", "store", "home", "artifacts", "image_tag", "parallelism", "warm_start",
         "mlflow_tracking_uri", "mlflow_autolog", "webhooks", "gpus", "console_token_file")
STORE_ENV, ARTIFACTS_ENV = "KUBESAGE_STORE", "KUBESAGE_ARTIFACTS"
GPU_MODES = ("auto", "all", "none")
_URL = re.compile(r"https?://")


def load_local_config(path: str | None = None) -> LocalConfig:
    """Read the local config; without ``path`` use ``config/local.yaml`` if it exists.
    ``$KUBESAGE_STORE`` and ``$KUBESAGE_ARTIFACTS`` override its ``store`` and ``artifacts``."""
    if path is None and not os.path.exists(DEFAULT_PATH):
        return with_environment(LocalConfig())
    path = path or DEFAULT_PATH
    r = ConfigReader.open(path, ConfigError, "pass an existing --config file")
    r.unknown(_KEYS)
    mounts = r.child("mounts", required=False, example="{fsx: ../data/fsx}")
    store = r.get("store", str, False, "")
    if store and not is_url(store):  # a folder: this machine's, holding the embedded store
        if "home" in r.doc:
            raise r.fail("home", "is this machine's folder when store: is a URL; with a store "
                         "folder, drop home: (the folder is both)")
        home, store = r.path_of("store"), ""
    else:
        home = r.path_of("home", ".kubesage")
        if store:
            _check_store_url(r, store)
    artifacts = r.get("artifacts", str, False, "")
    return with_environment(LocalConfig(
        mounts={name: mounts.path_of(name, required=True, example="../data/fsx")
                for name in mounts.doc},
        store=home,
        database=store,
        artifacts=artifacts if is_url(artifacts) or not artifacts else r.path_of("artifacts"),
        image_tag=r.get("image_tag", str, False, "latest"),
        parallelism=r.get("parallelism", int, False, 4, least=1),
        warm_start=r.get("warm_start", bool, False, True),
        mlflow_tracking_uri=r.get("mlflow_tracking_uri", str, False, ""),
        mlflow_autolog=r.get("mlflow_autolog", bool, False, True),
        webhooks=list(r.strings("webhooks", _URL, "https://hooks.slack.com/services/...",
                                required=False)),
        gpus=r.get("gpus", str, False, "auto", choices=GPU_MODES),
        console_token_file=r.get("console_token_file", str, False, ""),
        source=path,
    ))


def _check_store_url(r: ConfigReader, url: str) -> None:
    from kubesage.store.url import StoreError, check_url

    try:
        check_url(url)
    except StoreError as e:
        raise r.fail("store", str(e)) from None


def is_url(text: str) -> bool:
    """Whether a ``store`` or ``artifacts`` value is a URL (``scheme://...``), not a folder."""
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", text))


def with_environment(config: LocalConfig) -> LocalConfig:
    """``config`` with ``$KUBESAGE_STORE`` (a URL or a folder) and ``$KUBESAGE_ARTIFACTS`` (a
    folder or ``s3://``) in place of its own settings, where set."""
    import dataclasses

    store, artifacts = os.environ.get(STORE_ENV, ""), os.environ.get(ARTIFACTS_ENV, "")
    if store and is_url(store):
        from kubesage.store.url import StoreError, check_url

        try:
            check_url(store)
        except StoreError as e:
            raise ConfigError(f"${STORE_ENV}: {e}") from None
        config = dataclasses.replace(config, database=store)
    elif store:
        config = dataclasses.replace(config, store=os.path.abspath(store), database="")
    if artifacts:
        config = dataclasses.replace(
            config, artifacts=artifacts if is_url(artifacts) else os.path.abspath(artifacts))
    return config


def readable_by_steps(folder: str) -> bool:
    """Whether steps can list ``folder``: always as a non-root host user (steps run as that
    user); as root, when its group (0) or everyone may read and enter it."""
    if os.getuid() != 0:
        return True
    st = os.stat(folder)
    wanted = stat.S_IRGRP | stat.S_IXGRP if st.st_gid == RUN_AS_GID else stat.S_IROTH | stat.S_IXOTH
    return st.st_mode & wanted == wanted


def data_mounts(pipeline: Pipeline, config: LocalConfig,
                where: str = "the local config") -> dict[str, tuple[str, str]]:
    """mount name -> (path in the container, local folder) for every data mount the pipeline's
    components declare, checked against ``config``; ``where`` tells the user which file to edit."""
    found: dict[str, tuple[str, str]] = {}
    for task in pipeline.tasks:
        for name, target in task.spec.mounts:
            source = config.mounts.get(name)
            if source is None:
                raise ConfigError(
                    f"component '{task.spec.name}' mounts '{name}' at {target}, but "
                    f"{config.source} has no 'mounts.{name}'; add "
                    f"'mounts: {{{name}: /path/to/folder}}' to {where}")
            if not os.path.isdir(source):
                raise ConfigError(
                    f"mounts.{name} in {config.source}: folder {source} does not exist; create "
                    "it (or run 'kubesage sample-data' for the sample set)")
            if not readable_by_steps(source):
                raise ConfigError(
                    f"mounts.{name} in {config.source}: folder {source} is readable by its owner "
                    f"only, and steps run as the non-root user {RUN_AS_UID}:{RUN_AS_GID}; let "
                    f"them read it: chmod -R g+rX {source}")
            found[name] = (target, source)
    return found
