"""The SageMaker target config (``config/sagemaker.yaml``): where and on what a pipeline runs.

Nothing here is pipeline code: role, bucket, images, instance types, network, FSx and the
model package group live in this file, and every missing or malformed value is reported with
its key. Per-component hints (``components:``) tell the compiler how to map a component when
the defaults (below) are not what you want.

Default mapping of a component onto a SageMaker step:

- ``training``: it declares a ``Model`` output and no ``Model`` input, or a ``Distribution`` of
  more than one process (the job that makes a model);
- ``register``: only by hint (``kind: register``), becomes a ``ModelStep`` (RegisterModel);
- ``transform``: it declares ``Serving`` (batch inference the serving image answers alike):
  a model in the serving image plus a batch transform job, between the component's two halves
  as processing steps (``kind: processing`` runs it whole as one processing job instead);
- ``processing``: everything else.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from kubesage.config.fusion import read_fusion
from kubesage.config.reader import ConfigError, ConfigReader
from kubesage.plan.costs import FusionSettings

DEFAULT_PATH = os.path.join("config", "sagemaker.yaml")
KINDS = ("processing", "training", "register", "transform")

_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_ROLE = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/[\w+=,.@/-]+$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_SUBNET = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_SG = re.compile(r"^sg-[0-9a-f]{8,17}$")
_FSX = re.compile(r"^fs-[0-9a-f]{8,21}$")
_INSTANCE = re.compile(r"^ml\.[a-z0-9-]+\.[a-z0-9-]+$")
_DURATION = re.compile(r"^P(\d+D)?(T(\d+H)?(\d+M)?)?$")
_IMAGE = re.compile(r".*/")
_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


class SageMakerConfigError(ConfigError):
    """The SageMaker target config is missing, malformed, or has a wrong value."""


@dataclass(frozen=True)
class MountConfig:
    """An FSx for Lustre file system that plays a named data mount (``fsx``)."""

    file_system_id: str
    directory_path: str  # /<mount name>/<path inside the file system>
    s3_uri: str  # its S3 data repository: processing jobs read the same data from here


@dataclass(frozen=True)
class ComponentHints:
    """How one component maps onto SageMaker; every field is optional."""

    kind: str | None = None
    instance_type: str | None = None
    instance_count: int | None = None
    volume_size_gb: int | None = None
    # return name -> (output artifact, file in it, JSON path): where a condition reads a value
    returns: dict[str, tuple[str, str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class SageMakerConfig:
    """Everything the compiler, the local executor and submission need to know."""

    region: str
    role_arn: str
    bucket: str
    prefix: str
    images: dict[str, str]
    processing_instance_type: str
    training_instance_type: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    spot: bool
    max_run_s: int
    max_wait_s: int
    mounts: dict[str, MountConfig]
    model_package_group: str
    cache_expire_after: str = "P30D"
    # A Condition that does not hold: "skip" its steps (as on every target), or "fail" the
    # execution with a FailStep that says which condition missed.
    unmet_condition: str = "skip"
    components: dict[str, ComponentHints] = field(default_factory=dict)
    # logical image -> the exact URI its steps run (a content tag of the code compiled)
    pinned: dict[str, str] = field(default_factory=dict)
    # Jobs without outbound network access (EnableNetworkIsolation), and the KMS key that
    # encrypts their volumes and outputs ("" = the service's default encryption).
    network_isolation: bool = False
    kms_key: str = ""
    local_config: str | None = None  # local target config for `run --target sagemaker`
    source: str = "(defaults)"
    serving_instance_type: str = "ml.m5.xlarge"  # endpoints `kubesage deploy` creates
    transform_instance_type: str = ""  # batch transform jobs; "" = processing_instance_type
    # Which steps share one job (``kubesage.plan.fusion``); auto unless the config says otherwise.
    fusion: FusionSettings = field(default_factory=FusionSettings)
    # Training jobs keep their instances this long after they end (a warm pool: SageMaker's
    # KeepAlivePeriodInSeconds), so the next matching training job skips its start; 0 = none.
    warm_pool_s: int = 0

    @property
    def account_id(self) -> str:
        match = _ROLE.match(self.role_arn)
        assert match is not None
        return match.group(1)

    def image_uri(self, image: str, component: str) -> str:
        """The registry URI of a logical image name (``kubesage/torch``); a reference pinned
        by digest in a registry (``host/repo@sha256:...``, as a catalog pins) is used as it is."""
        if image in self.pinned:
            return self.pinned[image]
        if "@sha256:" in image and "." in image.split("/", 1)[0]:
            return image
        name = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
        uri = self.images.get(image) or self.images.get(name)
        if uri is None:
            raise SageMakerConfigError(
                f"{self.source}: component '{component}' runs in image '{name}', but 'images' has "
                f"no entry for it; add 'images: {{{name}: <account>.dkr.ecr.<region>."
                f"amazonaws.com/{name}:<tag>}}'"
            )
        return uri

    def with_content_tags(self, refs: dict[str, str]) -> SageMakerConfig:
        """The same settings naming the project's images by the code they hold: ``refs`` maps a
        logical image to ``<image>:code-<hash>``; its URI is the configured repository with
        that tag."""
        import dataclasses

        pinned = {}
        for name, ref in refs.items():
            uri = self.image_uri(name, name)
            repo = uri.rsplit(":", 1)[0] if ":" in uri.rsplit("/", 1)[-1] else uri
            pinned[name] = f"{repo}:{ref.rsplit(':', 1)[1]}"
        return dataclasses.replace(self, pinned=pinned)

    def hints(self, component: str) -> ComponentHints:
        return self.components.get(component, ComponentHints())

    def s3(self, *parts: str) -> str:
        """``s3://<bucket>/<prefix>/<parts...>``."""
        keys = [p.strip("/") for p in (self.prefix, *parts) if p and p.strip("/")]
        return "s3://" + "/".join([self.bucket, *keys])


def load_config(path: str | None = None) -> SageMakerConfig:
    """Read and check the target config; without ``path`` read ``config/sagemaker.yaml``."""
    path = path or DEFAULT_PATH
    return _parse(ConfigReader.open(path, SageMakerConfigError, (
        "pass --config FILE, or copy config/sagemaker.yaml and fill in your account's values")))


_TOP = ("region", "role_arn", "bucket", "prefix", "images", "instance_types", "network", "spot",
        "mounts", "model_package_group", "cache_expire_after", "conditions", "security",
        "components", "local_config", "fusion", "warm_pool")
# KeepAlivePeriodInSeconds at most: docs.aws.amazon.com/sagemaker/latest/dg/train-warm-pools.html
MAX_KEEP_ALIVE_S = 3600
# A KMS key: its ARN, an alias ARN, a key ID or an alias name (the forms SageMaker accepts).
_KMS = re.compile(r"^(arn:aws[a-z-]*:kms:(?P<region>[a-z]{2}(-[a-z]+)+-\d):\d{12}:(key|alias)/[\w/+=,.@-]+"
                  r"|[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}|alias/[\w/+=,.@-]+)$")
UNMET = ("skip", "fail")


def _warm_pool(r: ConfigReader, spot: bool) -> int:
    """``warm_pool.keep_alive_s``: 0 to 3600 seconds, and not with managed spot."""
    warm = r.child("warm_pool", required=False, known=("keep_alive_s",))
    keep_alive: int = warm.get("keep_alive_s", int, False, 0, least=0, example="1800")
    if keep_alive > MAX_KEEP_ALIVE_S:
        raise warm.fail("keep_alive_s", f"is {keep_alive}; SageMaker keeps a warm pool at most "
                        f"{MAX_KEEP_ALIVE_S} s (KeepAlivePeriodInSeconds); use {MAX_KEEP_ALIVE_S} or less")
    if keep_alive and spot:
        raise warm.fail("keep_alive_s", "is set, but spot.enabled is true: SageMaker keeps no warm "
                        "pool for managed spot training (train-warm-pools.html, Considerations); "
                        "turn one of them off")
    return keep_alive


def _mounts(r: ConfigReader) -> dict[str, MountConfig]:
    """``mounts``: each data mount's FSx file system (training jobs) and S3 copy (processing)."""
    mounts_r = r.child("mounts", required=False)
    mounts = {}
    for name in mounts_r.doc:
        m = mounts_r.child(name, example="{file_system_id: fs-..., directory_path: /abcdefgh/data}",
                           known=("file_system_id", "directory_path", "s3_uri"))
        mounts[name] = MountConfig(
            file_system_id=m.get("file_system_id", str, pattern=_FSX, example="fs-0123456789abcdef0"),
            directory_path=m.get("directory_path", str, pattern=re.compile(r"^/\S*$"),
                                 example="/abcdefgh/datasets"),
            s3_uri=m.get("s3_uri", str, pattern=re.compile(r"^s3://[a-z0-9.-]+(/\S*)?$"),
                         example="s3://my-datasets/"),
        )
    return mounts


def _components(r: ConfigReader) -> dict[str, ComponentHints]:
    """``components``: per-component hints (job kind, instance, returned values' files)."""
    components = {}
    comps_r = r.child("components", required=False)
    for name in comps_r.doc:
        c = comps_r.child(name, known=("kind", "instance_type", "instance_count", "volume_size_gb",
                                       "returns"))
        returns = {}
        rets = c.child("returns", required=False)
        for ret in rets.doc:
            rr = rets.child(ret, example="{output: report, file: evaluation.json, path: a.b}",
                            known=("output", "file", "path"))
            returns[ret] = (rr.get("output", str, example="report"),
                            rr.get("file", str, example="evaluation.json"),
                            rr.get("path", str, example="metrics.accuracy.value"))
        components[name] = ComponentHints(
            kind=c.get("kind", str, False, choices=KINDS),
            instance_type=c.get("instance_type", str, False, pattern=_INSTANCE, example="ml.g5.2xlarge"),
            instance_count=c.get("instance_count", int, False, least=1),
            volume_size_gb=c.get("volume_size_gb", int, False),
            returns=returns,
        )
    return components


def _parse(r: ConfigReader) -> SageMakerConfig:
    r.unknown(_TOP)
    images = r.child("images", example="{kubesage/torch: 111122223333.dkr.ecr.us-east-1."
                     "amazonaws.com/kubesage/torch:1.0}")
    types = r.child("instance_types", example="{processing: ml.m5.xlarge, training: ml.g5.2xlarge}",
                    known=("processing", "training", "serving", "transform"))
    net = r.child("network", example="{subnets: [subnet-...], security_groups: [sg-...]}",
                  known=("subnets", "security_groups"))
    spot = r.child("spot", required=False, known=("enabled", "max_run_s", "max_wait_s"))
    max_run = spot.get("max_run_s", int, False, 86400)
    max_wait = spot.get("max_wait_s", int, False, 2 * max_run)
    enabled = spot.get("enabled", bool, False, False)
    if enabled and max_wait < max_run:
        raise spot.fail("max_wait_s", f"({max_wait}) must be >= max_run_s ({max_run}) for managed spot")
    mounts = _mounts(r)
    conditions = r.child("conditions", required=False, known=("unmet",))
    unmet = conditions.get("unmet", str, False, "skip")
    if unmet not in UNMET:
        raise conditions.fail("unmet", f"is {unmet!r}; use skip (the guarded steps are skipped) "
                              "or fail (a FailStep fails the execution)")
    security = r.child("security", required=False, known=("network_isolation", "kms_key"))
    isolated = security.get("network_isolation", bool, False, False)
    kms_key = security.get("kms_key", str, False, "", pattern=_KMS,
                           example="arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-"
                                   "1234567890ab")
    region = r.get("region", str, pattern=_REGION, example="us-east-1")
    matched = _KMS.match(kms_key) if kms_key else None
    key_region = matched.group("region") if matched else None
    if key_region and key_region != region:
        raise security.fail("kms_key", f"is a key in {key_region}, but the jobs run in {region} "
                                       f"(region); use a key of {region}")
    keep_alive = _warm_pool(r, enabled)
    components = _components(r)
    return SageMakerConfig(
        region=region,
        role_arn=r.get("role_arn", str, pattern=_ROLE,
                       example="arn:aws:iam::111122223333:role/kubesage-sagemaker"),
        bucket=r.get("bucket", str, pattern=_BUCKET, example="my-kubesage-bucket"),
        prefix=r.get("prefix", str, False, "kubesage"),
        images={name: images.get(name, str, pattern=_IMAGE, example="<registry>/<repository>:<tag>")
                for name in images.doc},
        processing_instance_type=types.get("processing", str, pattern=_INSTANCE, example="ml.m5.xlarge"),
        training_instance_type=types.get("training", str, pattern=_INSTANCE, example="ml.g5.2xlarge"),
        serving_instance_type=types.get("serving", str, False, "ml.m5.xlarge", pattern=_INSTANCE,
                                        example="ml.m5.xlarge"),
        transform_instance_type=types.get("transform", str, False, "", pattern=_INSTANCE,
                                          example="ml.m5.xlarge"),
        subnets=net.strings("subnets", _SUBNET, "subnet-0123456789abcdef0"),
        security_groups=net.strings("security_groups", _SG, "sg-0123456789abcdef0"),
        spot=enabled,
        max_run_s=max_run,
        max_wait_s=max_wait,
        mounts=mounts,
        model_package_group=r.get("model_package_group", str, pattern=_NAME, example="digits-classifier"),
        cache_expire_after=r.get("cache_expire_after", str, False, "P30D", pattern=_DURATION,
                                 example="P30D"),
        unmet_condition=unmet,
        network_isolation=isolated,
        kms_key=kms_key,
        components=components,
        local_config=r.path_of("local_config") or None,
        source=r.path,
        fusion=read_fusion(r),
        warm_pool_s=keep_alive,
    )
