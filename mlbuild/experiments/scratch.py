"""A variant's scratch workspace, made ready before its build: the user's uncommitted changes,
data linked (not copied) from the shared cache, and the project's per-stage caches."""

from __future__ import annotations

from pathlib import Path

from mlbuild.errors import MlbuildError


def prepare_variant(root: Path, work: Path) -> None:
    """Everything a fresh checkout of the baseline needs to build as a variant of *root*."""
    _overlay(root, work)
    _link_data(root, work)
    _share_caches(root, work)


def _link_data(root: Path, work: Path) -> None:
    """Check data out of the shared cache as links, not copies (unless the project chose its
    own cache.type): reflinks where the filesystem has them, else hard links to the
    read-only cache objects; a copy only across filesystems."""
    from mlbuild.dvcfmt.dvcconfig import load

    if (load(root).get("cache") or {}).get("type"):
        return
    with (work / ".dvc" / "config.local").open("a", encoding="utf-8") as config:
        config.write("    type = reflink,hardlink,copy\n")


def _share_caches(root: Path, work: Path) -> None:
    """A variant's stages use the project's own tool cache for each stage (~/.cache:
    matplotlib's font list, which it writes under a lock), shared with the project's builds,
    so that a sweep of twelve variants does not build it twelve times. Bytecode and TMPDIR
    stay private to the variant (installed packages' bytecode is read where pip wrote it)."""
    from mlbuild.dvcfmt.dvcyaml import load_pipeline
    from mlbuild.files.layout import state_dir
    from mlbuild.files.names import derived

    try:
        names = list(load_pipeline(root).stages)
    except MlbuildError:
        return  # no compiled pipeline at hand: each variant builds its own caches
    for name in names:
        safe = derived(name.replace("/", "_"))
        shared = state_dir(root) / "home" / safe / ".cache"
        shared.mkdir(parents=True, exist_ok=True)
        link = state_dir(work) / "home" / safe / ".cache"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(shared, target_is_directory=True)


def _overlay(root: Path, work: Path) -> None:
    """The user's uncommitted changes to tracked files, as DVC's experiments include them."""
    from mlbuild.gitrepo import git

    changed = git(root, "diff", "--name-only", "-z", "HEAD").decode().split("\0")
    for rel in filter(None, changed):
        source, target = root / rel, work / rel
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
        else:
            target.unlink(missing_ok=True)
