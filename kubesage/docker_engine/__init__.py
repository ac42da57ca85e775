"""Helpers for the Docker engine, used by the targets that run steps in containers here:
``containers`` (labels, following a job's group, removal) and ``images`` (``kubesage build``,
code-hash labels and content tags, freshness before a run, pushes). Nothing in the neutral core
(``dsl``, ``plan``, ``runs``) imports this package."""
