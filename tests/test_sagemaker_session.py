"""Compiling for SageMaker changes no process-wide state: what the SDK needs is scoped."""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

import pytest

import kubesage.targets.sagemaker.session as session
from kubesage.project.loader import load_pipeline
from kubesage.targets.sagemaker import TARGET
from tests.conftest import REPO

_LOGGERS = ("sagemaker", "botocore", "boto3")


def _process_state() -> dict[str, Any]:
    import boto3

    return {"environ": dict(os.environ), "warnings": list(warnings.filters),
            "levels": {name: logging.getLogger(name).level for name in _LOGGERS},
            "boto3 default session": boto3.DEFAULT_SESSION}


def _validator() -> object:
    from sagemaker.core.config.config_manager import SageMakerConfig

    return SageMakerConfig.__dict__["validate_sagemaker_config"]


def _helper_validator() -> object:
    from sagemaker.core.helper import session_helper

    return session_helper.validate_sagemaker_config


def _local_client() -> object:
    from sagemaker.mlops.workflow import steps

    return steps.LocalSagemakerClient


@pytest.mark.docker
def test_compile_leaves_the_process_as_it_was(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    pipeline = load_pipeline("pipelines/image_classification.py")[0].build()
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    before = _process_state()
    TARGET.compile(pipeline, str(first), None)  # the first compile in this process, maybe
    assert _process_state() == before
    validator = _validator()
    TARGET.compile(pipeline, str(second), None)
    assert _process_state() == before
    assert _validator() is validator
    assert session._VALIDATED  # checked once, for every later compile in this process
    assert first.read_bytes() == second.read_bytes()


def test_the_context_restores_what_was_set_before(monkeypatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "false")
    monkeypatch.delenv("SAGEMAKER_VALIDATE_ROLE", raising=False)
    logging.getLogger("botocore").setLevel(logging.DEBUG)
    try:
        before = _process_state()
        with session.sdk_context("us-east-1"):
            assert os.environ["AWS_DEFAULT_REGION"] == "eu-west-1"  # a region set wins
            assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"
            assert os.environ["SAGEMAKER_VALIDATE_ROLE"] == "false"
            assert logging.getLogger("botocore").level == logging.ERROR
            patched = _validator()
            patched_helper = _helper_validator()
            local_client = _local_client()
        assert _process_state() == before
        assert _validator() is not patched  # the SDK's own method is back
        assert _helper_validator() is not patched_helper
        assert _local_client() is not local_client
    finally:
        logging.getLogger("botocore").setLevel(logging.NOTSET)


@pytest.mark.docker
def test_steps_build_no_throwaway_local_session(tmp_path, monkeypatch) -> None:
    """A processing step builds a ``LocalSagemakerClient`` only to read a method's name; in a
    compile that client starts no local-mode session (about 0.25 s of boto3 clients each)."""
    from sagemaker.core.local.local_session import LocalSession

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a compile built a local-mode session")

    monkeypatch.chdir(REPO)
    monkeypatch.setattr(LocalSession, "__init__", refuse)
    pipeline = load_pipeline("pipelines/image_classification.py")[0].build()
    TARGET.compile(pipeline, str(tmp_path / "a.json"), None)
    assert '"Type": "Processing"' in (tmp_path / "a.json").read_text()


def test_botocore_models_are_parsed_once_per_process() -> None:
    first, second = session.botocore_session(), session.botocore_session()
    assert first is not second  # sessions of their own (config, credentials) ...
    assert first.get_component("data_loader") is second.get_component("data_loader")  # ... one loader


def test_the_sdk_config_is_refused_as_the_sdk_refuses_it() -> None:
    """The once-per-process check gives the SDK's own verdict and message."""
    import jsonschema
    from sagemaker.core.config.config_schema import SAGEMAKER_PYTHON_SDK_CONFIG_SCHEMA

    bad = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": "yes"}}}}
    with pytest.raises(jsonschema.ValidationError) as ours:
        session._validate_config(bad)
    with pytest.raises(jsonschema.ValidationError) as sdks:
        jsonschema.validate(bad, SAGEMAKER_PYTHON_SDK_CONFIG_SCHEMA)
    assert str(ours.value) == str(sdks.value)
    session._validate_config(session.TELEMETRY_OPT_OUT)  # what every compile passes is valid
    jsonschema.validate(session.TELEMETRY_OPT_OUT, SAGEMAKER_PYTHON_SDK_CONFIG_SCHEMA)
