"""Kubernetes' syntax of object names, labels and annotations, checked before a cluster sees them.

The API server refuses a pod (or a TrainJob) whose metadata breaks these rules, long after the
pipeline was submitted; kubesage checks them in the target config, at compile time and in
``kubesage validate FILE.yaml``. Sources (the rules are apimachinery's
``k8s.io/apimachinery/pkg/util/validation``):

- label keys and values: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set
  a key is an optional prefix, a DNS subdomain of at most 253 characters, and ``/``, then a
  name of at most 63 characters of ``[a-z0-9A-Z]``, ``-``, ``_`` and ``.``, beginning and
  ending with an alphanumeric; a value is empty, or at most 63 characters of that set.
  Taint keys and values (tolerations) follow the same rules:
  https://kubernetes.io/docs/concepts/scheduling-eviction/taint-and-toleration/
- annotations: https://kubernetes.io/docs/concepts/overview/working-with-objects/annotations/#syntax-and-character-set
  keys as label keys; all keys and values of an object together at most 256 KiB
  (``TotalAnnotationSizeLimitB`` in ``k8s.io/apimachinery/pkg/api/validation/objectmeta.go``).
- object names: https://kubernetes.io/docs/concepts/overview/working-with-objects/names/
  a DNS-1123 label (namespaces, volume names in a pod) is at most 63 characters of
  ``[a-z0-9-]``, alphanumeric at both ends; a DNS-1123 subdomain (claims, service accounts,
  runtimes) at most 253 characters of such labels joined by ``.``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
ANNOTATIONS_MAX_BYTES = 256 * 1024
_CHARSET = ("letters, digits, '-', '_' and '.', beginning and ending with a letter or digit")


def label_key_problem(key: str) -> str | None:
    """Why ``key`` is no valid label (or annotation, or taint) key; None when it is."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return (f"its prefix '{prefix}' must be a DNS subdomain of at most 253 lowercase "
                "letters, digits, '-' and '.' (like example.com)")
    if not name:
        return "its name (after any prefix/) is empty"
    if len(name) > 63:
        return f"its name '{name}' has {len(name)} characters; at most 63"
    if not _NAME.match(name):
        return f"its name '{name}' must be {_CHARSET}"
    return None


def label_value_problem(value: str) -> str | None:
    """Why ``value`` is no valid label (or taint) value; None when it is."""
    if len(value) > 63:
        return f"has {len(value)} characters; a label value has at most 63"
    if value and not _NAME.match(value):
        return f"must be empty or {_CHARSET}"
    return None


def labels_problem(labels: Mapping[str, str]) -> str | None:
    """The first problem of a set of labels, naming the label; None when all are valid."""
    for key, value in labels.items():
        problem = label_key_problem(key)
        if problem:
            return f"label key '{key}': {problem}"
        problem = label_value_problem(value)
        if problem:
            return f"label '{key}': value '{value}' {problem}"
    return None


def annotations_problem(annotations: Mapping[str, str]) -> str | None:
    """The first problem of an object's annotations (keys, total size); None when valid."""
    for key in annotations:
        problem = label_key_problem(key)
        if problem:
            return f"annotation key '{key}': {problem}"
    size = sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())
    if size > ANNOTATIONS_MAX_BYTES:
        return (f"annotations total {size} bytes; an object's annotations (keys and values) "
                f"take at most {ANNOTATIONS_MAX_BYTES} (256 KiB)")
    return None


def dns_label_problem(name: str) -> str | None:
    """Why ``name`` is no DNS-1123 label (a namespace, a pod's volume name); None when it is."""
    if len(name) > 63 or not _DNS_LABEL.match(name):
        return ("must be at most 63 lowercase letters, digits and '-', beginning and ending "
                f"with a letter or digit (a DNS-1123 label; it has {len(name)} characters)")
    return None


def dns_subdomain_problem(name: str) -> str | None:
    """Why ``name`` is no DNS-1123 subdomain (a claim, a service account); None when it is."""
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        return ("must be at most 253 lowercase letters, digits, '-' and '.', each part "
                "beginning and ending with a letter or digit (a DNS-1123 subdomain)")
    return None
