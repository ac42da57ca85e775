"""Compiling for SageMaker changes no process-wide state: what the SDK needs is scoped."""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

import kubesage.targets.sagemaker.session as session
from kubesage.loader import load_pipeline
from kubesage.targets.sagemaker import TARGET
from tests.conftest import REPO

_LOGGERS = ("sagemaker", "botocore", "boto3")


def _process_state() -> dict[str, Any]:
    return {"environ": dict(os.environ), "warnings": list(warnings.filters),
            "levels": {name: logging.getLogger(name).level for name in _LOGGERS}}


def _validator() -> object:
    from sagemaker.core.config.config_manager import SageMakerConfig

    return SageMakerConfig.__dict__["validate_sagemaker_config"]


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
        assert _process_state() == before
        assert _validator() is not patched  # the SDK's own method is back
    finally:
        logging.getLogger("botocore").setLevel(logging.NOTSET)
