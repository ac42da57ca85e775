"""An offline ``PipelineSession``: builds definitions with no AWS call and no account.

The SDK creates boto3 clients when ``sagemaker.mlops`` is imported, validates the role, asks for
the default bucket and account, and sends telemetry; each of those would reach the network. This
module sets the environment first, then imports the SDK (only here, only when compiling).
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
_IMDS = "AWS_EC2_METADATA_DISABLED"
TELEMETRY_OPT_OUT = {
    "SchemaVersion": "1.0",
    "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}},
}


def prepare_environment(region: str) -> None:
    """Environment the SDK reads at import: a region and no role check."""
    os.environ.setdefault("AWS_DEFAULT_REGION", region)
    os.environ["SAGEMAKER_VALIDATE_ROLE"] = "false"
    warnings.filterwarnings("ignore", module=r"sagemaker\..*")
    warnings.filterwarnings("ignore", message=".*PipelineSession.*")
    for name in ("sagemaker", "botocore", "boto3"):
        logging.getLogger(name).setLevel(logging.ERROR)


@contextmanager
def offline() -> Iterator[None]:
    """No instance-metadata lookups while compiling: without credentials, every client the SDK
    creates (at import, per step) would ask 169.254.169.254. Restored afterwards, so that
    submission on an EC2 instance still finds its role's credentials."""
    saved = os.environ.get(_IMDS)
    os.environ[_IMDS] = "true"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(_IMDS, None)
        else:
            os.environ[_IMDS] = saved


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
    """A ``PipelineSession`` whose bucket and account are the config's: nothing is looked up."""
    prepare_environment(config.region)
    check_sdk_version()
    import boto3
    from sagemaker.core.workflow.pipeline_context import PipelineSession

    quiet_sdk_logs()
    _validate_sdk_config_once()

    class OfflinePipelineSession(PipelineSession):  # type: ignore[misc]
        def default_bucket(self) -> str:
            return config.bucket

        def account_id(self) -> str:
            return config.account_id

    boto_session = boto3.Session(region_name=config.region)
    session = OfflinePipelineSession(
        boto_session=boto_session, default_bucket=config.bucket,
        sagemaker_config=TELEMETRY_OPT_OUT,
    )
    return session


def quiet_sdk_logs() -> None:
    """The SDK logs every default it applies (and configures handlers at import)."""
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in _SDK_LOGGERS]
    for name in [*_SDK_LOGGERS, *names]:
        logging.getLogger(name).setLevel(logging.ERROR)


def _validate_sdk_config_once() -> None:
    """The SDK re-validates its config dict against a large JSON schema on every lookup
    (about 40 per definition, 0.2 s each); the dict never changes here, so check it once."""
    import json

    from sagemaker.core.config.config_manager import SageMakerConfig

    original = SageMakerConfig.__dict__["validate_sagemaker_config"]
    if getattr(original, "kubesage_once", False):
        return
    seen: set[str] = set()

    def validate_once(sagemaker_config: dict[str, Any] | None = None) -> None:
        key = json.dumps(sagemaker_config, sort_keys=True, default=str)
        if key not in seen:
            original.__func__(sagemaker_config)
            seen.add(key)

    validate_once.kubesage_once = True  # type: ignore[attr-defined]
    SageMakerConfig.validate_sagemaker_config = staticmethod(validate_once)
