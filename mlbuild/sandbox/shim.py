"""The `python` a hermetic stage's shell finds first on PATH: it refuses the interpreter flags
that would skip the audit hook (-I, -E, -S), then runs mlbuild's own interpreter."""

from __future__ import annotations

import sys
from pathlib import Path

from mlbuild.files.temp import tmp_beside

# POSIX sh: scan the options before the program, as the interpreter parses them (-c and -m
# end the options; -W and -X take an argument, attached or as the next word).
SCRIPT = r"""#!/bin/sh
# written by mlbuild: see mlbuild/sandbox/shim.py
skip=
for arg do
  if [ -n "$skip" ]; then skip=; continue; fi
  case $arg in --) break ;; --*) continue ;; -|[!-]*) break ;; esac
  opts=${arg%%[cmWX]*}
  case $opts in
    *[IES]*)
      echo "mlbuild: stage '${DVC_STAGE:-?}' is hermetic: starting Python with '$arg' would" \
           "escape its audit hook; drop the flag" >&2
      exit 126 ;;
  esac
  case ${arg#"$opts"} in [cm]*) break ;; [WX]) skip=1 ;; esac
done
exec "%s" "$@"
"""


def python_shim(directory: Path) -> Path:
    """Write the python, python3 and python3.X launchers into *directory* (once); return it."""
    text = SCRIPT % sys.executable
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for name in ("python", f"python{sys.version_info.major}", version):
        path = directory / name
        try:
            if path.read_text(encoding="utf-8") == text:
                continue
        except OSError:
            directory.mkdir(parents=True, exist_ok=True)
        tmp = tmp_beside(path)  # parallel stages write too; a killed run's is cleaned up
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o755)
        tmp.replace(path)
    return directory
