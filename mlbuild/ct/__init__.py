"""Continuous training: one idempotent step that CI or cron runs. It decides whether a trigger
fired (new data, changed pipeline code, a due schedule, drift in what is served) against the
version that is serving, and if one did: builds, commits, verifies, pushes, registers and
promotes through the gate, recording every decision in the run history.

May import: monitor, serve, registry, api and everything below them.
"""
