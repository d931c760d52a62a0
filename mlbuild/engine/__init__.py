"""Building: one build composed from its parts (session.build, the entry point for api, verify
and experiments: the project lock, params and dvc.yaml, missing data, the plan, the sandbox,
the builder, the scheduler and the history record), the workspace opened once per command
(root, graph, lock, caches), staleness with a reason for every verdict, the builder (restore
or run and commit one stage), the parallel scheduler, the stage process runner with output
backups and process groups that never outlive mlbuild, recovery after a killed run, and the
isolation service (scratch workspaces: a clean checkout of a revision on the project's cache).

May import: every layer below (errors, events, contracts, pipeline, dvcfmt, config, store,
history, sandbox). Not verify, data, api or the CLI.
"""
