"""Experiments: sweeps and their variants built in isolated workspaces on the project's cache,
stored as DVC experiments (commits under refs/exps/), compared in a table.

May import: api, the engine and everything below them. Not the CLI.
"""
