"""Artifacts and logs: an output's files listed, one file shown as what it is, downloads."""

from __future__ import annotations

import os

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response

from kubesage.console import artifacts
from kubesage.console.pages import console_of, page, record_of
from kubesage.runs.logs import follow, reader
from kubesage.runs.record import RunRecord, StepRecord
from kubesage.store.artifacts import ArtifactStoreError
from kubesage.targets import base as targets

router = APIRouter()


def step_of(record: RunRecord, step: str) -> StepRecord:
    try:
        return record.step(step)
    except KeyError:
        raise HTTPException(404, f"Run {record.run_id} has no step '{step}'.") from None


def folder(request: Request, run_id: str, step: str, output: str) -> tuple[RunRecord, str]:
    """The run and the local folder of one of its outputs (404 when there is none here)."""
    record = record_of(request, run_id)
    try:
        return record, artifacts.folder_of(step_of(record, step), output,
                                           console_of(request).workspace)
    except (artifacts.ArtifactRefused, ArtifactStoreError) as e:
        raise HTTPException(404, str(e)) from None


def file_in(request: Request, run_id: str, step: str, output: str) -> tuple[RunRecord, str, str]:
    """The run, the ``?path=`` given and the file it names inside the output (403 when the
    path leads outside it)."""
    record, root = folder(request, run_id, step, output)
    relative = request.query_params.get("path", "")
    try:
        return record, relative, artifacts.safe_path(root, relative)
    except artifacts.ArtifactRefused as e:
        status = 404 if "is not a file" in str(e) else 403
        raise HTTPException(status, str(e)) from None


@router.get("/runs/{run_id}/artifacts/{step}/{output}")
def listing(request: Request, run_id: str, step: str, output: str) -> Response:
    record, root = folder(request, run_id, step, output)
    found, total = artifacts.files(root)
    out = record.step(step).outputs[output]
    return page(request, "artifact.html", {"record": record, "step": step, "output": output,
                                           "out": out, "files": found, "total": total})


@router.get("/runs/{run_id}/artifacts/{step}/{output}/view")
def view(request: Request, run_id: str, step: str, output: str) -> Response:
    record, relative, path = file_in(request, run_id, step, output)
    return page(request, "file.html", {
        "record": record, "step": step, "output": output, "path": relative,
        "size": os.path.getsize(path), "sha256": artifacts.sha256_file(path),
        "preview": artifacts.preview(path)})


@router.get("/runs/{run_id}/artifacts/{step}/{output}/raw")
def raw(request: Request, run_id: str, step: str, output: str) -> Response:
    """The file itself: an image inline (for the preview), anything else as a download."""
    _, relative, path = file_in(request, run_id, step, output)
    kind = artifacts.IMAGES.get(os.path.splitext(path)[1].lower())
    if kind and request.query_params.get("inline"):
        return FileResponse(path, media_type=kind,
                            headers={"Content-Security-Policy": "sandbox; default-src 'none'"})
    return FileResponse(path, media_type="application/octet-stream",
                        filename=os.path.basename(relative),
                        headers={"Content-Security-Policy": "sandbox; default-src 'none'"})


@router.get("/runs/{run_id}/steps/{step}/logview")
def log_view(request: Request, run_id: str, step: str) -> Response:
    """The log viewer of one step (fetched when its section is opened): it follows the log."""
    record = record_of(request, run_id)
    step_of(record, step)
    return page(request, "_logview.html", {"run_id": record.run_id, "step": step})


@router.get("/runs/{run_id}/logview")
def log_view_of(request: Request, run_id: str) -> Response:
    """The log viewer of the step ``?step=`` names (one item of a collapsed loop)."""
    return log_view(request, run_id, request.query_params.get("step", ""))


@router.get("/runs/{run_id}/steps/{step}/log.txt")
def log_text(request: Request, run_id: str, step: str) -> Response:
    """The step's whole log as text (as it is now)."""
    console = console_of(request)
    record = record_of(request, run_id)
    step_of(record, step)
    try:
        text = "".join(follow(reader(console.workspace, targets.get), lambda: record, step,
                              keep_following=False))
    except Exception as e:  # a service that cannot be read: say why
        raise HTTPException(404, f"The log of {step} cannot be read: {e}") from None
    return PlainTextResponse(console.scrub(text))
