"""Questions asked of the project's whole history: where a model or an output came from
(lineage), what a piece of data fed (impact), a model's life as one report (audit) and the
team's MLOps KPIs. Everything is read from what every clone shares: git history, dvc.lock at
each commit, the registry's tags and the findings kept as git notes (history.notes).

May import: ct, monitor, serve, registry, experiments, api and everything below them.
"""
