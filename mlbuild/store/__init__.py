"""Where content lives: DVC 3 hashing, the stat cache, the content-addressed cache, the
run-cache, the integrity of the cache (fsck, gc), verified transfers, data tracked by .dvc
pointers, .gitignore entries for cached outputs, the project boundary (no path leads out
through a symlink), and the DVC remotes (the only place that drives DVC's Repo for transfers).

May import: errors, contracts, pipeline, dvcfmt. Not config, the engine or anything above.
"""
