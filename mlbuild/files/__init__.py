"""Small helpers every layer uses: file names kept within the name limit, temporary files
that carry their writer's pid, and a full filesystem described in words.

May import: errors only.
"""
