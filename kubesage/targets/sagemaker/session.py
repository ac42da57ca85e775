"""An offline ``PipelineSession``: builds definitions with no AWS call and no account.

The SDK creates boto3 clients when ``sagemaker.mlops`` is imported, validates the role, asks for
the default bucket and account, and sends telemetry; each of those would reach the network. This
module sets the environment first, then imports the SDK (only here, only when compiling), and
puts everything back afterwards.
"""

from __future__ import annotations

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
    169.254.169.254), its warnings and logs quiet, its config validated once per process.
    Afterwards every one of these is as it was: submission on an EC2 instance still finds its
    role's credentials, and nothing of the SDK's set-up leaks into the rest of the process."""
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
            with _validated_once():  # imports the SDK's config module, which sets its loggers
                quiet_sdk_logs()
                yield
        finally:
            for name, value in saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            for name in _sdk_loggers():  # one first made in here: back to no level of its own
                logging.getLogger(name).setLevel(saved_levels.get(name, logging.NOTSET))


def check_sdk_version() -> None:
    from importlib.metadata import version

    from kubesage.dsl.errors import KubesageError

    found = version("sagemaker")
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

    boto_session = boto3.Session(region_name=config.region)
    return OfflinePipelineSession(boto_session=boto_session, default_bucket=config.bucket,
                                  sagemaker_config=TELEMETRY_OPT_OUT)


def quiet_sdk_logs() -> None:
    """The SDK logs every default it applies (and configures its loggers at import): call it
    again inside ``sdk_context`` once more of the SDK is imported."""
    for name in _sdk_loggers():
        logging.getLogger(name).setLevel(logging.ERROR)


def _sdk_loggers() -> list[str]:
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in _SDK_LOGGERS]
    return sorted({*_SDK_LOGGERS, *names})


@contextmanager
def _validated_once() -> Iterator[None]:
    """The SDK re-validates its config dict against a large JSON schema on every lookup
    (about 40 per definition, 0.2 s each); the dict never changes here, so check each one once
    per process (``_VALIDATED``), with the SDK's method patched only inside."""
    import json

    from sagemaker.core.config.config_manager import SageMakerConfig

    original = SageMakerConfig.__dict__["validate_sagemaker_config"]

    def validate_once(sagemaker_config: dict[str, Any] | None = None) -> None:
        key = json.dumps(sagemaker_config, sort_keys=True, default=str)
        if key not in _VALIDATED:
            original.__func__(sagemaker_config)
            _VALIDATED.add(key)

    SageMakerConfig.validate_sagemaker_config = staticmethod(validate_once)
    try:
        yield
    finally:
        SageMakerConfig.validate_sagemaker_config = original
