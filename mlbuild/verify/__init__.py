"""The reproducibility check: rebuild a revision in an isolated workspace (the engine's
isolation service and build entry point, in this process), compare every output with
dvc.lock, name the first stage that differs and the likely cause.

May import: the engine and everything below it. Not data, api or the CLI.
"""
