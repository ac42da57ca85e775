"""What kubesage ships for testing a target: the probe components (``probes``)."""
