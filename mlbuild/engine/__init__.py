"""Building: the workspace opened once per command (root, graph, lock, caches), staleness
with a reason for every verdict, the builder (restore or run and commit one stage), the
parallel scheduler, the stage process runner with output backups and process groups that
never outlive mlbuild, recovery after a killed run, and isolated scratch workspaces (a clean
checkout of a revision on a shared read-only cache).

May import: every layer below (errors, events, contracts, pipeline, dvcfmt, config, store,
history, sandbox). Not verify, data, api or the CLI.
"""
