"""The model registry: versions and stage assignments of the artifacts declared in dvc.yaml,
kept as GTO-format annotated git tags (`model@v1.2.0`, `model#prod#3`), promotion gates that
decide on the evidence, rollback, and the questions asked of it (list, history, get).

May import: api and everything below it. GTO is imported only by registry.tags, lazily.
"""
