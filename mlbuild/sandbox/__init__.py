"""The hermetic sandbox: the scrubbed environment a stage runs in, the audit hook
(hook/sitecustomize.py, stdlib only, loaded by every Python process a stage starts) and the
verdicts on what a stage read, wrote or reached without declaring it.

May import: errors, contracts, pipeline, dvcfmt, config. Not the engine or anything above.
"""
