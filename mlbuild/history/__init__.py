"""The run history: every command's record appended to a journal (cheap enough for a no-op
build) and a SQLite index of it, with schema versions and migrations, for `mlbuild log` and the
life-cycle commands that read it.

May import: errors, events, gitrepo. Nothing else: every layer above may record into it.
"""
