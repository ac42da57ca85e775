"""An offline ``PipelineSession``: builds definitions with no AWS call and no account.

The SDK creates boto3 clients when ``sagemaker.mlops`` is imported, validates the role, asks for
the default bucket and account, and sends telemetry; each of those would reach the network. This
module sets the environment first, then imports the SDK (only here, only when compiling), and
puts everything back afterwards.

It also keeps a compile cheap beside the SDK's import: botocore's service models are parsed once
per process (``botocore_session``), the SDK's config is schema-checked once per process, and no
step builds a throwaway local-mode session (``_no_throwaway_sessions``).
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubesage.targets.sagemaker.config import SageMakerConfig

SDK_VERSION = "3.27.0"
_SDK_LOGGERS = ("sagemaker", "botocore", "boto3")
_VALIDATED: set[str] = set()  # the SDK config dicts checked in this process (JSON text)
TELEMETRY_OPT_OUT = {
    "SchemaVersion": "1.0",
    "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}},
}


@contextmanager
def sdk_context(region: str) -> Iterator[None]:
    """Inside: what the SDK needs to build definitions offline. A region (unless one is set; the
    SDK creates clients when ``sagemaker.mlops`` is first imported, so import it only in here),
    no role check, no instance-metadata lookups (without credentials every client would ask
    169.254.169.254), its warnings and logs quiet, its config validated once per process,
    botocore's models parsed once per process, no local-mode session built by processing and
    transform steps. Afterwards every one of these is as it was: submission on an EC2 instance
    still finds its role's credentials, and nothing of the SDK's set-up leaks into the rest of
    the process."""
    check_sdk_version()
    env = {"AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", region),
           "SAGEMAKER_VALIDATE_ROLE": "false", "AWS_EC2_METADATA_DISABLED": "true"}
    saved_env = {name: os.environ.get(name) for name in env}
    saved_levels = {name: logging.getLogger(name).level for name in _sdk_loggers()}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"sagemaker\..*")
        warnings.filterwarnings("ignore", message=".*PipelineSession.*")
        os.environ.update(env)
        try:
            # in this order: the first import of the SDK (in the next two) makes boto3 clients
            # and sets its loggers
            with _models_parsed_once(), _validated_once(), _no_throwaway_sessions():
                quiet_sdk_logs()
                yield
        finally:
            for name, value in saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            for name in _sdk_loggers():  # one first made in here: back to no level of its own
                _set_level(name, saved_levels.get(name, logging.NOTSET))


def check_sdk_version() -> None:
    """The pinned SageMaker SDK is installed (the ``sagemaker`` extra), else a one-line error."""
    from importlib.metadata import PackageNotFoundError, version

    from kubesage.dsl.errors import KubesageError

    try:
        found = version("sagemaker")
    except PackageNotFoundError:
        raise KubesageError("the SageMaker target needs the SageMaker SDK, which the light install "
                            "leaves out: pip install 'kubesage[sagemaker]'") from None
    if found != SDK_VERSION:
        raise KubesageError(
            f"the SageMaker compiler is pinned to sagemaker=={SDK_VERSION} (definitions must not "
            f"change under you), found {found}; pip install sagemaker=={SDK_VERSION}"
        )


def pipeline_session(config: SageMakerConfig) -> Any:
    """A ``PipelineSession`` whose bucket and account are the config's: nothing is looked up.
    Use it inside ``sdk_context``."""
    import boto3
    from sagemaker.core.workflow.pipeline_context import PipelineSession

    quiet_sdk_logs()

    class OfflinePipelineSession(PipelineSession):  # type: ignore[misc]
        def default_bucket(self) -> str:
            return config.bucket

        def account_id(self) -> str:
            return config.account_id

    boto_session = boto3.Session(region_name=config.region, botocore_session=botocore_session())
    return OfflinePipelineSession(boto_session=boto_session, default_bucket=config.bucket,
                                  sagemaker_config=TELEMETRY_OPT_OUT)


def botocore_session() -> Any:
    """A new botocore session that reads service models through this process's one loader.

    Each botocore session otherwise has a loader of its own, which reads and parses the JSON
    models (``endpoints.json``, sagemaker's several MB, s3's) again for the first client it
    creates; the models are the installed botocore's and never change in a process."""
    import botocore.session

    session = botocore.session.get_session()
    session.register_component("data_loader", _loader(session.get_config_variable("data_path")))
    return session


@functools.cache
def _loader(data_path: str | None) -> Any:
    """botocore's data loader for ``data_path`` (``AWS_DATA_PATH``), one per process: it caches
    every model it has parsed."""
    from botocore.loaders import create_loader

    return create_loader(data_path)


def quiet_sdk_logs() -> None:
    """The SDK logs every default it applies (and configures its loggers at import): call it
    again inside ``sdk_context`` once more of the SDK is imported."""
    for name in _sdk_loggers():
        _set_level(name, logging.ERROR)


def _set_level(name: str, level: int) -> None:
    """``setLevel`` where the level differs: each call clears the cache of every logger in the
    process, and the SDK makes several hundred of them."""
    logger = logging.getLogger(name)
    if logger.level != level:
        logger.setLevel(level)


def _sdk_loggers() -> list[str]:
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in _SDK_LOGGERS]
    return sorted({*_SDK_LOGGERS, *names})


@contextmanager
def _models_parsed_once() -> Iterator[None]:
    """The SDK makes boto3 clients from boto3's default session when it is first imported (the
    sagemaker and s3 models, parsed at length): while there is no default session, the one made
    in here reads models through this process's one loader (``botocore_session``), so that the
    pipeline session's clients find them parsed. A default session made in here is dropped
    afterwards, as if it had never been."""
    import boto3

    made_here = boto3.DEFAULT_SESSION is None
    if made_here:
        boto3.setup_default_session(botocore_session=botocore_session())
    try:
        yield
    finally:
        if made_here:
            boto3.DEFAULT_SESSION = None


@contextmanager
def _validated_once() -> Iterator[None]:
    """The SDK validates its config dict against a large JSON schema on every lookup (about 40
    per definition) and in every session it builds, checking the schema itself each time (0.1 s
    per call); the dict never changes here, so check each one once per process (``_VALIDATED``)
    against the pinned SDK's schema, with the SDK's two validators patched only inside."""
    from sagemaker.core.config.config_manager import SageMakerConfig
    from sagemaker.core.helper import session_helper

    original = SageMakerConfig.__dict__["validate_sagemaker_config"]
    original_helper = session_helper.validate_sagemaker_config
    SageMakerConfig.validate_sagemaker_config = staticmethod(_validate_config)
    session_helper.validate_sagemaker_config = _validate_config
    try:
        yield
    finally:
        SageMakerConfig.validate_sagemaker_config = original
        session_helper.validate_sagemaker_config = original_helper


def _validate_config(sagemaker_config: dict[str, Any] | None = None) -> None:
    """What ``jsonschema.validate(sagemaker_config, SDK schema)`` does, the first time a dict is
    seen in this process, less its check of the schema against the JSON Schema meta-schema (the
    schema is the pinned SDK's constant; that check is nearly all of the cost)."""
    import json

    key = json.dumps(sagemaker_config, sort_keys=True, default=str)
    if key in _VALIDATED:
        return
    from jsonschema.exceptions import best_match

    error = best_match(_config_validator().iter_errors(sagemaker_config))
    if error is not None:
        raise error
    _VALIDATED.add(key)


@functools.cache
def _config_validator() -> Any:
    """A validator for the SDK's config schema, built once per process."""
    from jsonschema.validators import validator_for
    from sagemaker.core.config.config_schema import SAGEMAKER_PYTHON_SDK_CONFIG_SCHEMA as SCHEMA

    return validator_for(SCHEMA)(SCHEMA)


@contextmanager
def _no_throwaway_sessions() -> Iterator[None]:
    """``ProcessingStep`` and ``TransformStep`` build a ``LocalSagemakerClient()`` only to read
    one of its method names; without a session given, that client starts a local-mode
    ``Session`` (six boto3 clients, a config lookup: about 0.25 s per step). Inside, the steps
    module sees a subclass that starts none: same methods, same names."""
    from sagemaker.mlops.workflow import steps

    original = steps.LocalSagemakerClient

    class SessionlessLocalClient(original):  # type: ignore[misc,valid-type]
        """``LocalSagemakerClient`` holding only the session it is given (none here)."""

        def __init__(self, sagemaker_session: Any = None) -> None:
            self.sagemaker_session = sagemaker_session

    steps.LocalSagemakerClient = SessionlessLocalClient
    try:
        yield
    finally:
        steps.LocalSagemakerClient = original
