"""What the user configures, turned into DVC's language: Hydra composition of configs/ into
params.yaml, stage declarations (stages/*.yaml) compiled into dvc.yaml, mlbuild.yaml settings,
the environment record, the import analysis that finds a stage's code, and the helper stage
code calls for its params.

May import: errors, contracts, pipeline, dvcfmt. Not the store, the engine or anything above.
"""
