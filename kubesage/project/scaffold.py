"""``kubesage init DIR``: a team's own project, ready to run, test and share.

The project has its components, a pipeline, one image built on kubesage's runtime base image
(``kubesage/runtime:<version>``, which ``kubesage build`` makes from the installed package), the
three target configs, a unit test and a README whose two commands work. Nothing in it copies
kubesage itself.
"""

from __future__ import annotations

import os
import re

from kubesage import __version__
from kubesage.dsl.errors import KubesageError
from kubesage.util.atomic import write_atomic


class InitError(KubesageError):
    """A project cannot be created where asked."""


def project_name(folder: str) -> str:
    """A DNS-label name from a folder name (``Vision Team`` -> ``vision-team``)."""
    name = re.sub(r"[^a-z0-9]+", "-", os.path.basename(os.path.abspath(folder)).lower()).strip("-")
    return (name or "project")[:40]


def init_project(folder: str) -> list[str]:
    """Write a new project into ``folder`` (absent or empty); the files written."""
    if os.path.exists(folder) and (not os.path.isdir(folder) or os.listdir(folder)):
        raise InitError(f"{folder} exists and is not an empty folder; pass a new folder name")
    name = project_name(folder)
    files = {path: text.format(name=name, module=name.replace("-", "_"), version=__version__)
             for path, text in _FILES.items()}
    for path, text in files.items():
        write_atomic(os.path.join(folder, path), text)
    return sorted(files)


_README = """\
# {name}

Components and pipelines of {name}, written once as containers: run them here in Docker, compile
them for Kubeflow Pipelines or SageMaker Pipelines, share them with other teams. Made with
`kubesage init` (kubesage {version}); needs Python 3.11, Docker and kubesage installed
(`pip install -e .` installs this project and kubesage).

```bash
kubesage run pipelines/example.py   # the example pipeline, each step in Docker (builds the image)
python -m pytest tests              # the components, called as plain functions
```

- `components/`: your components (`components/text.py`); each declares its image,
  `{name}/main`, built from `containers/main/Dockerfile` on kubesage's runtime base image. Add
  the packages they need to `containers/main/requirements.txt`.
- `pipelines/`: pipelines built from them. One component alone:
  `kubesage run components/text.py:count-words --input text=data --param min_length=3`.
- `config/`: where things run: `local.yaml` (the data folder mounted at `/data`, the run store),
  `kfp.yaml` and `sagemaker.yaml` (registry, cluster, account). Pipeline code never names them.
- A run rebuilds the image's code layer first when the code changed since it was built.
- Share a component: `kubesage components --catalog DIR publish components/text.py:count-words`;
  another project uses it with `kubesage.catalog.use("count-words@0.1.0")`.
- For the cloud: `kubesage build --push`, then `kubesage compile|submit ... --target kfp|sagemaker`.
"""

_PYPROJECT = """\
[project]
name = "{name}"
version = "0.1.0"
description = "Components and pipelines of {name} (kubesage)"
requires-python = ">=3.11"
dependencies = ["kubesage=={version}"]

[project.optional-dependencies]
dev = ["pytest"]

[tool.setuptools]
packages = ["components", "pipelines"]

[tool.kubesage]
image_prefix = "{name}/"   # containers/main/Dockerfile builds {name}/main

[tool.pytest.ini_options]
pythonpath = ["."]
testpaths = ["tests"]
"""

_COMPONENTS = '''\
"""Components of {name}: typed Python functions that run in the image {name}/main."""

from __future__ import annotations

import os

from kubesage import Dataset, Input, Metrics, Output, component

IMAGE = "{name}/main"


@component(version="0.1.0", image=IMAGE, mounts={{"data": "/data"}})
def load_text(text: Output[Dataset], path: str = "/data/sample.txt") -> int:
    """Copy a text file from the shared data folder into a dataset; its number of lines."""
    with open(path) as f:
        lines = f.read().splitlines()
    with open(text.file("lines.txt"), "w") as f:
        f.write("\\n".join(lines) + "\\n")
    text.metadata["lines"] = len(lines)
    return len(lines)


@component(version="0.1.0", image=IMAGE)
def count_words(text: Input[Dataset], report: Output[Metrics], min_length: int = 1) -> int:
    """Count the words of at least ``min_length`` letters in every file of ``text``."""
    words = 0
    for name in sorted(os.listdir(text.path)):
        with open(text.file(name)) as f:
            words += sum(1 for w in f.read().split() if len(w) >= min_length)
    report.log_metric("words", words)
    return words
'''

_PIPELINE = '''\
"""The example pipeline of {name}: load a text from the shared data folder, count its words."""

from components.text import count_words, load_text
from kubesage import pipeline


@pipeline(name="{name}-example")
def example(path: str = "/data/sample.txt", min_length: int = 3) -> None:
    """Count the words of a text on the shared data folder."""
    loaded = load_text(path=path)
    count_words(text=loaded.outputs["text"], min_length=min_length)
'''

_DOCKERFILE = """\
# The image of {name}'s components: kubesage's runtime base image (`kubesage build` makes it from
# the installed kubesage), the packages in requirements.txt, then the code (last: a code change
# rebuilds in seconds).
ARG RUNTIME=kubesage/runtime:{version}
FROM ${{RUNTIME}}
ARG PIP_ARGS=""
USER root
COPY containers/main/requirements.txt /tmp/requirements.txt
RUN pip install $PIP_ARGS -r /tmp/requirements.txt && rm /tmp/requirements.txt
COPY components /app/components
COPY pipelines /app/pipelines
# steps run as the runtime image's non-root user
USER 1000:0
"""

_TEST = '''\
"""A component called outside a pipeline is its plain function: unit-test it like one."""

from components.text import count_words
from kubesage import Dataset, Metrics


def test_count_words_counts_words_of_the_minimum_length(tmp_path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("one two three\\nfour")
    report = Metrics(str(tmp_path / "report"))
    assert count_words(Dataset(str(tmp_path / "in")), report, min_length=4) == 2
    assert report.metadata["words"] == 2.0
'''

_LOCAL = """\
# Local target: where data mounts come from and where runs are kept (paths relative to here).
mounts:
  data: ../data       # mounted read-only at /data, where components read it
store: ../.kubesage   # run records, cache index, artifacts
"""

_KFP = """\
# Kubeflow Pipelines target: the cluster, never the pipeline. Fill in your own.
image:
  registry: 123456789012.dkr.ecr.us-west-2.amazonaws.com   # `kubesage build --push` pushes here
namespace: kubeflow-user-example-com
volumes:
  data:
    claim: {name}-data      # a ReadWriteMany PersistentVolumeClaim holding the data folder
local:
  config: local.yaml
"""

_SAGEMAKER = """\
# SageMaker Pipelines target: the account, never the pipeline. Fill in your own.
region: us-east-1
role_arn: arn:aws:iam::111122223333:role/{name}-sagemaker
bucket: {name}-artifacts-111122223333
prefix: pipelines
images:                     # `kubesage build --push` pushes here; compile pins the pushed digest
  {name}/main: 111122223333.dkr.ecr.us-east-1.amazonaws.com/{name}/main
instance_types:
  processing: ml.m5.xlarge
  training: ml.m5.xlarge
network:
  subnets: [subnet-0123456789abcdef0]
  security_groups: [sg-0123456789abcdef0]
mounts:
  data:
    file_system_id: fs-0123456789abcdef0
    directory_path: /abcdefgh/data
    s3_uri: s3://{name}-data-111122223333/data/
model_package_group: {name}
local_config: local.yaml
"""

_FILES = {
    "README.md": _README,
    "pyproject.toml": _PYPROJECT,
    ".gitignore": ".cache/\n.kubesage/\n__pycache__/\n*.egg-info/\n",
    ".dockerignore": "*\n!components/\n!pipelines/\n!containers/\n**/__pycache__\n**/*.pyc\n",
    "components/__init__.py": "",
    "components/text.py": _COMPONENTS,
    "pipelines/__init__.py": "",
    "pipelines/example.py": _PIPELINE,
    "containers/main/Dockerfile": _DOCKERFILE,
    "containers/main/requirements.txt": "# the packages your components import, one per line\n",
    "config/local.yaml": _LOCAL,
    "config/kfp.yaml": _KFP,
    "config/sagemaker.yaml": _SAGEMAKER,
    "data/sample.txt": "Write each step once, as a container.\nRun it anywhere the team needs it.\n",
    "tests/test_components.py": _TEST,
}
