"""Compiling the pipeline for other engines: Kubeflow Pipelines (`mlbuild export kfp`), the
task each KFP step runs (one stage built against the DVC remote, in a fresh clone), and the
container recipe the tasks run in (`mlbuild export image`). The `kfp` SDK is imported here only,
and lazily: it is an optional extra.

May import: api, engine, config, dvcfmt, pipeline, store and everything below them.
"""
