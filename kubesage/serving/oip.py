"""KServe's Open Inference Protocol v2 ``infer``: the request's tensors and the answer, in JSON
or with the binary tensor data extension (as Triton and KServe define it).

A request whose header ``Inference-Header-Content-Length`` is N carries a JSON object of N bytes,
then the raw data of each input whose ``parameters.binary_data_size`` is set, in input order
(little-endian, row-major; a ``BYTES`` element is a 4-byte little-endian length and its bytes).
Inputs with JSON ``data`` may stand beside them. An output asked for with
``parameters.binary_data`` (or every output, under the request's ``binary_data_output``) is
answered the same way: the JSON object first, its length in ``Inference-Header-Content-Length``,
then the outputs' bytes, as ``application/octet-stream``. Anything malformed is a ``BadInput``
(a 400) naming the problem.

The models here take images: one ``BYTES`` input of shape ``[N]`` (base64 strings in JSON, the
image files' own bytes in binary) and an optional ``top_k`` input (one integer); they answer
``class`` (BYTES), ``score`` (FP32) and ``top_k`` (BYTES, each a JSON list of ``[class, score]``).
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass, field
from typing import Any

from kubesage.serving.models import BadInput

HEADER_LENGTH = "Inference-Header-Content-Length"
NUMERIC = {"BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
           "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
           "FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}
"""The protocol's fixed-size datatypes as numpy dtypes (``BYTES`` is the other one)."""
OUTPUTS = ("class", "score", "top_k")
REFUSED = {"shared_memory_region": "shared memory extension",
           "classification": "classification extension"}
"""Parameters of the protocol's extensions this server does not implement."""
INFER_EXAMPLE = ('expected {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [N], '
                 '"data": [base64, ...]}]}')


@dataclass
class Tensor:
    """One input as sent: ``data`` flat, row-major (a ``BYTES`` element is ``bytes`` when sent
    binary, as the JSON gave it otherwise)."""

    name: str
    datatype: str
    shape: list[int]
    data: list[Any]


@dataclass
class InferRequest:
    """What an ``infer`` request asks: the images, the model's options, the request's ID and
    the outputs to answer, each with whether it goes back as binary data."""

    images: list[bytes]
    options: dict[str, Any] = field(default_factory=dict)
    request_id: str | None = None
    outputs: list[tuple[str, bool]] = field(default_factory=list)


def parse_json(text: bytes, what: str = "the body") -> Any:
    """``text`` as JSON; ``BadInput`` naming ``what`` when it is not."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadInput(f"{what} is not valid JSON ({e})") from None


def split_body(body: bytes, header_length: str | None) -> tuple[Any, bytes | None]:
    """(the JSON object, the binary data after it) of a request body; ``header_length`` is the
    ``Inference-Header-Content-Length`` header, if any (without it, no binary data: None)."""
    if header_length is None:
        return parse_json(body), None
    try:
        n = int(header_length.strip())
    except ValueError:
        raise BadInput(f"{HEADER_LENGTH} '{header_length}' is not a whole number of bytes") from None
    if n < 0 or n > len(body):
        raise BadInput(f"{HEADER_LENGTH} is {n}, but the body holds {len(body)} bytes; it gives "
                       "the length of the JSON object at the body's start")
    return parse_json(body[:n], f"the JSON header (the body's first {n} bytes)"), body[n:]


def _shape(name: str, shape: Any) -> list[int]:
    if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise BadInput(f"input '{name}': shape must be a list of whole numbers >= 0, not {shape!r}")
    return shape


def _count(shape: list[int]) -> int:
    n = 1
    for dim in shape:
        n *= dim
    return n


def _binary_size(name: str, parameters: dict[str, Any]) -> int | None:
    size = parameters.get("binary_data_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise BadInput(f"input '{name}': binary_data_size must be a whole number >= 0, "
                       f"not {size!r}")
    return size


def read_inputs(doc: Any, tail: bytes | None) -> list[Tensor]:
    """The inputs of a request's JSON object, the binary ones cut in order from ``tail`` (what
    follows the JSON object; None when the request has no ``Inference-Header-Content-Length``)."""
    binary = tail or b""
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, dict) for i in inputs):
        raise BadInput(INFER_EXAMPLE)
    tensors, offset = [], 0
    for i, spec in enumerate(inputs):
        name = str(spec.get("name") or f"inputs[{i}]")
        datatype = spec.get("datatype")
        if datatype != "BYTES" and datatype not in NUMERIC:
            raise BadInput(f"input '{name}': unknown datatype {datatype!r}; this server takes "
                           f"BYTES, {', '.join(NUMERIC)}")
        shape = _shape(name, spec.get("shape"))
        size = _binary_size(name, _parameters(spec, f"input '{name}'"))
        if size is None:
            tensors.append(Tensor(name, datatype, shape, _json_data(name, datatype, shape,
                                                                    spec.get("data"))))
            continue
        if "data" in spec:
            raise BadInput(f"input '{name}' has both JSON data and binary_data_size; send one")
        if offset + size > len(binary):
            raise BadInput(f"input '{name}': binary_data_size {size} runs past the body's end "
                           f"({len(binary) - offset} bytes of binary data left"
                           + (f"; the request has no {HEADER_LENGTH} header)" if tail is None
                              else ")"))
        raw = binary[offset:offset + size]
        offset += size
        tensors.append(Tensor(name, datatype, shape, _binary_data(name, datatype, shape, raw)))
    if offset != len(binary):
        raise BadInput(f"{len(binary) - offset} bytes follow the JSON header beyond the inputs' "
                       f"binary_data_size ({offset} of {len(binary)} bytes); they must add up")
    return tensors


def _binary_data(name: str, datatype: str, shape: list[int], raw: bytes) -> list[Any]:
    """A tensor's elements from its binary data."""
    import numpy as np

    n = _count(shape)
    if datatype != "BYTES":
        dtype = np.dtype(NUMERIC[datatype])
        if len(raw) != n * dtype.itemsize:
            raise BadInput(f"input '{name}': {len(raw)} bytes of {datatype} do not make shape "
                           f"{shape} ({n} x {dtype.itemsize} = {n * dtype.itemsize} bytes)")
        data: list[Any] = np.frombuffer(raw, dtype).tolist()
        return data
    elements: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise BadInput(f"input '{name}': BYTES element {len(elements)} has a cut-off length "
                           f"({len(raw) - offset} of 4 bytes)")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise BadInput(f"input '{name}': BYTES element {len(elements)} declares {length} "
                           f"bytes, but {len(raw) - offset} are left of its binary data")
        elements.append(raw[offset:offset + length])
        offset += length
    if len(elements) != n:
        raise BadInput(f"input '{name}': shape {shape} needs {n} BYTES element(s), "
                       f"the binary data holds {len(elements)}")
    return elements


def _flat(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    return [item for row in data for item in _flat(row)]


def _json_data(name: str, datatype: str, shape: list[int], data: Any) -> list[Any]:
    """A tensor's elements from its JSON ``data`` (flat or nested, row-major)."""
    if not isinstance(data, list) or not data:
        raise BadInput(f"input '{name}' has no data")
    flat = _flat(data)
    if len(flat) != _count(shape):
        raise BadInput(f"input '{name}': shape {shape} does not hold {len(flat)} element(s)")
    if datatype == "BOOL":
        fits = all(isinstance(x, bool) for x in flat)
    elif datatype.startswith(("INT", "UINT")):
        fits = all(isinstance(x, int) and not isinstance(x, bool) for x in flat)
    elif datatype.startswith("FP"):
        fits = all(isinstance(x, int | float) and not isinstance(x, bool) for x in flat)
    else:
        fits = True  # BYTES: the model reads its elements
    if not fits:
        raise BadInput(f"input '{name}': data of datatype {datatype} must be "
                       f"{'true/false' if datatype == 'BOOL' else 'numbers'}")
    return flat


def b64_image(item: Any, where: str) -> bytes:
    """An image file's bytes: sent as such (binary data), or base64 (a string, or
    ``{"b64": ...}``) in JSON; ``BadInput`` naming ``where`` otherwise."""
    if isinstance(item, bytes):
        return item
    if isinstance(item, dict) and "b64" in item:
        item = item["b64"]
    if not isinstance(item, str):
        raise BadInput(f"{where}: expected a base64-encoded image (a string, or {{\"b64\": ...}})")
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput(f"{where}: not valid base64") from None


def _top_k(tensor: Tensor) -> int:
    value = tensor.data[0] if len(tensor.data) == 1 else None
    if not tensor.datatype.startswith(("INT", "UINT")) or not isinstance(value, int) or value < 1:
        raise BadInput(f"input 'top_k' must be one integer >= 1 (INT32 or INT64, shape [1]), not "
                       f"{tensor.datatype} {tensor.data[:3]}")
    return value


def infer_request(body: bytes, header_length: str | None) -> InferRequest:
    """The images, options, ID and outputs of an ``infer`` request's body."""
    doc, binary = split_body(body, header_length)
    tensors = read_inputs(doc, binary)
    top_k = [t for t in tensors if t.name == "top_k"]
    options = {"top_k": _top_k(top_k[0])} if top_k else {}
    images = [t for t in tensors if t.name != "top_k"]
    if len(images) != 1 or len(top_k) > 1:
        raise BadInput(f"expected one image input (BYTES) and at most a 'top_k' input, not "
                       f"{', '.join(repr(t.name) for t in tensors)}")
    tensor = images[0]
    if tensor.datatype != "BYTES":
        raise BadInput(f"input '{tensor.name}' has datatype '{tensor.datatype}'; send the images "
                       "as BYTES (base64 strings in JSON, or the files' bytes as binary data)")
    if not tensor.data:
        raise BadInput(f"input '{tensor.name}' has no data")
    request_id = doc.get("id")
    return InferRequest([b64_image(item, f"data[{i}]") for i, item in enumerate(tensor.data)],
                        options, None if request_id is None else str(request_id),
                        requested_outputs(doc))


def requested_outputs(doc: dict[str, Any]) -> list[tuple[str, bool]]:
    """(name, as binary data) of each output a request asks for, in its order; every output
    when it names none. ``binary_data`` on an output overrides the request's
    ``binary_data_output``."""
    default = _flag(_parameters(doc, "the request"), "binary_data_output", "the request")
    outputs = doc.get("outputs")
    if outputs is None:
        return [(name, default) for name in OUTPUTS]
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise BadInput('outputs must be a list of {"name": ..., "parameters"?: {...}}')
    asked: list[tuple[str, bool]] = []
    for output in outputs:
        name = output.get("name")
        if name not in OUTPUTS:
            raise BadInput(f"no output {name!r}; this model answers {', '.join(OUTPUTS)}")
        if name in (n for n, _ in asked):
            raise BadInput(f"output '{name}' is asked for twice")
        params = _parameters(output, f"output '{name}'")
        binary = _flag(params, "binary_data", f"output '{name}'")
        asked.append((name, default if "binary_data" not in params else binary))
    return asked


def _parameters(spec: dict[str, Any], where: str) -> dict[str, Any]:
    """The ``parameters`` of a request, input or output; ``BadInput`` for an extension this
    server has not."""
    parameters = spec.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadInput(f"{where}: parameters must be an object")
    for key, extension in REFUSED.items():
        if key in parameters:
            raise BadInput(f"{where}: this server has no {extension} ({key}); send tensors in "
                           "JSON or as binary data, and read the top_k output for the best classes")
    return parameters


def _flag(parameters: dict[str, Any], key: str, where: str) -> bool:
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise BadInput(f"{where}: {key} must be true or false, not {value!r}")
    return value


def _encode(datatype: str, data: list[Any]) -> bytes:
    """A tensor's binary data: little-endian, row-major; BYTES as length-prefixed elements."""
    if datatype == "BYTES":
        items = [x if isinstance(x, bytes) else str(x).encode() for x in data]
        return b"".join(struct.pack("<I", len(x)) + x for x in items)
    import numpy as np

    return np.asarray(data, dtype=NUMERIC[datatype]).tobytes()


def infer_answer(model: str, answers: list[dict[str, Any]],
                 request: InferRequest) -> tuple[bytes, dict[str, str]]:
    """(body, headers) answering ``request`` with the model's ``answers``: plain JSON when no
    output goes back as binary data, else the JSON object then each binary output's data."""
    n = len(answers)
    columns = {"class": ("BYTES", [a["class"] for a in answers]),
               "score": ("FP32", [a["score"] for a in answers]),
               "top_k": ("BYTES", [json.dumps(a["top_k"]) for a in answers])}
    outputs, chunks = [], []
    for name, binary in request.outputs:
        datatype, data = columns[name]
        output: dict[str, Any] = {"name": name, "datatype": datatype, "shape": [n]}
        if binary:
            chunks.append(_encode(datatype, data))
            output["parameters"] = {"binary_data_size": len(chunks[-1])}
        else:
            output["data"] = data
        outputs.append(output)
    doc: dict[str, Any] = {"model_name": model, "outputs": outputs}
    if request.request_id is not None:
        doc["id"] = request.request_id
    header = json.dumps(doc, separators=(",", ":")).encode()
    if not chunks:
        return header, {"Content-Type": "application/json"}
    return header + b"".join(chunks), {"Content-Type": "application/octet-stream",
                                       HEADER_LENGTH: str(len(header))}
