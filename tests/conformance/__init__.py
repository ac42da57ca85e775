"""The conformance suite: one corpus of pipelines, four execution paths, one contract."""
