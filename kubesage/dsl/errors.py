"""Errors raised while a pipeline is defined, before anything runs.

Every message names the task and the input concerned, and says how to fix it.
"""

from __future__ import annotations


class KubesageError(Exception):
    """Base class of every error kubesage raises on purpose."""


class DefinitionError(KubesageError):
    """A component or pipeline definition is invalid."""


class UnknownInputError(DefinitionError):
    """A task was given an argument its component does not declare."""


class MissingInputError(DefinitionError):
    """A task was not given a required input."""


class TypeMismatchError(DefinitionError):
    """A value or an upstream output does not fit the type an input declares."""


class CycleError(DefinitionError):
    """The tasks of a pipeline depend on each other in a cycle."""


class DuplicateNameError(DefinitionError):
    """Two tasks (or two parameters) share a name."""


class ChannelUseError(DefinitionError, TypeError):
    """A run-time value (channel) was used like a Python value while the pipeline was built."""


class ParameterError(DefinitionError):
    """A pipeline parameter value is missing, unknown or of the wrong type."""
