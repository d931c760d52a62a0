"""Stages of the example digits pipeline; run each as ``python -m stages.<name>``."""
