"""File names derived from user file names, kept within the filesystem's name limit."""

from __future__ import annotations

NAME_MAX = 255  # bytes in one path component on Linux, macOS and Windows filesystems alike


def fits(name: str) -> bool:
    """True when *name* can be one path component (so a file of that name can exist)."""
    return len(name.encode("utf-8", "surrogateescape")) <= NAME_MAX


def derived(name: str, prefix: str = "", suffix: str = "") -> str:
    """prefix + name + suffix, with *name* shortened (and made unique by a digest of it) when
    the result would be longer than a file name may be: a 255-byte output still gets its
    temporary file, backup or log beside it."""
    whole = f"{prefix}{name}{suffix}"
    if fits(whole):
        return whole
    import hashlib  # only for an over-long name

    digest = hashlib.md5(name.encode("utf-8", "surrogateescape"),
                         usedforsecurity=False).hexdigest()[:12]
    room = NAME_MAX - len(f"{prefix}~{digest}{suffix}".encode("utf-8", "surrogateescape"))
    head = name.encode("utf-8", "surrogateescape")[:max(room, 0)]
    return f"{prefix}{head.decode('utf-8', 'ignore')}~{digest}{suffix}"
