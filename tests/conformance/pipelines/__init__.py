"""The conformance corpus: one small pipeline per contract feature (one ``@pipeline`` a file).

Every pipeline uses only the diagnostics of ``kubesage/testing/probes.py`` (which are in the
image) and imported Kubeflow component YAML; each runs in seconds.
"""
