"""DVC's files and protocols, read and written exactly as DVC does: dvc.yaml (loaded,
templated by DVC's own parser, checked against DVC's schema, memoised), dvc.lock (schema 2.0
entries), params files, .dvc/config at every level, .dvcignore, DVC's repository lock, the YAML
1.2 dialect and atomic YAML/JSON writes.

May import: errors, files, contracts, pipeline. Never the store, the engine or anything above.
"""
