"""Data versioning for programs: add, pull, push, status, fsck and gc, with contracts
checked on tracked data. No printing.

May import: the engine and everything below it. Not verify, api or the CLI.
"""
