"""A pipeline that takes a secret: the step uses it, nothing kubesage writes shows it."""

from kubesage import Secret, pipeline
from kubesage.testing.probes import uses_secret


@pipeline(name="with-secret")
def with_secret(token: Secret, label: str = "public") -> None:
    uses_secret(token=token, label=label)
