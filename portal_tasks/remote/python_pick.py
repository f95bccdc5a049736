"""Run the helper on a Python that can run it, when the one sshd started is too old (RHEL 8's python3 is 3.6).

The zipapp's ``__main__`` imports this module only on a Python older than :data:`NEEDS`, so it is written
for every Python from 2.7 on (no f-strings, no annotations): it re-execs the newest ``python3.X`` on the
PATH (X at least NEEDS' minor), else one in the usual conda places and envs of the user, with the same
arguments and the same stdin; or it prints the helper's usual JSON error naming the Pythons found.
"""

import glob
import json
import os
import re
import sys

if False:  # type comments only (this module is read by Python 2.7 too)
    from typing import Callable, List, Mapping, Optional, Tuple  # noqa: F401

#: The oldest Python the helper is written for (the rest of this package may use what it has).
NEEDS = (3, 8)
#: Set in the environment of a re-exec: a Python found that way that is still too old ends the search.
AGAIN = "PORTAL_HELPER_REEXEC"
#: The names looked for on the PATH.
VERSIONED = re.compile(r"^python3\.(\d+)$")
#: Looked at after the PATH: where people install conda (its base has a python3.X), and their conda envs.
PLACES = ("~/miniforge3/bin", "~/mambaforge/bin", "~/miniconda3/bin", "~/anaconda3/bin", "/opt/conda/bin",
          "/opt/miniforge3/bin", "/opt/miniconda3/bin", "/opt/anaconda3/bin")
ENVS = ("~/.conda/envs/*/bin", "~/miniforge3/envs/*/bin", "~/miniconda3/envs/*/bin", "~/micromamba/envs/*/bin")


def pythons(path_dirs, listdir=os.listdir, runnable=None):
    # type: (List[str], Callable[[str], List[str]], Optional[Callable[[str], bool]]) -> List[Tuple[int, str]]
    """[(minor, path)] of every ``python3.X`` in ``path_dirs``, newest first; of two with the same X the
    one earlier on the PATH (as the shell would find it)."""
    if runnable is None:
        runnable = lambda p: os.path.isfile(p) and os.access(p, os.X_OK)
    found, seen = [], set()
    for rank, folder in enumerate(path_dirs):
        try:
            names = listdir(folder or ".")
        except OSError:
            continue
        for name in names:
            match = VERSIONED.match(name)
            if not match or match.group(1) in seen:
                continue
            path = os.path.join(folder, name)
            if runnable(path):
                seen.add(match.group(1))
                found.append((int(match.group(1)), rank, path))
    found.sort(key=lambda item: (-item[0], item[1]))
    return [(minor, path) for minor, _, path in found]


def candidates(environ, find=pythons):
    # type: (Mapping[str, str], Callable[[List[str]], List[Tuple[int, str]]]) -> List[Tuple[int, str]]
    """The python3.X of the PATH (newest first), then those in the usual conda places and envs of this user
    (no rc file is read): the first of them new enough runs the helper."""
    more = [os.path.expanduser(place) for place in PLACES]
    for pattern in ENVS:
        more += sorted(glob.glob(os.path.expanduser(pattern)))
    return find(environ.get("PATH", os.defpath).split(os.pathsep)) + find(more)


def choice(found, needs=NEEDS):
    # type: (List[Tuple[int, str]], Tuple[int, int]) -> Optional[str]
    """The path of the newest Python in ``found`` that can run the helper, or None."""
    for minor, path in found:
        if (3, minor) >= needs:
            return path
    return None


def too_old_message(version, executable, found, needs=NEEDS):
    # type: (str, str, List[Tuple[int, str]], Tuple[int, int]) -> str
    """The one line for a host where no Python can run the helper."""
    others = ["python3.%d (%s)" % (minor, path) for minor, path in found
              if os.path.realpath(path) != os.path.realpath(executable)]
    text = "portal's helper needs Python %d.%d or newer; this server has Python %s (%s)" % (
        needs[0], needs[1], version, executable)
    if others:
        text += " and " + ", ".join(others)
    else:
        text += " and no other python3.X on the PATH or in the usual conda places"
    return text + "."


def run_newer(argv=None, environ=None):
    # type: (Optional[List[str]], Optional[Mapping[str, str]]) -> None
    """Re-exec the helper (``argv``: its archive and verb) on the newest Python on the PATH that can run
    it; print the JSON error and exit 1 where there is none. Never returns."""
    argv = list(sys.argv if argv is None else argv)
    environ = os.environ if environ is None else environ
    found = candidates(environ)
    if not environ.get(AGAIN):
        env = dict(environ)
        env[AGAIN] = sys.executable or "python"
        for minor, path in found:  # the newest that starts (a broken one is passed over)
            if (3, minor) >= NEEDS:
                try:
                    os.execve(path, [path] + argv, env)
                except OSError:
                    continue
    version = sys.version.split()[0]
    sys.stdout.write(json.dumps({
        "ok": False, "kind": "PythonTooOld",
        "error": too_old_message(version, sys.executable or "python", found),
        "python": {"version": version, "path": sys.executable, "found": [p for _, p in found]},
    }) + "\n")
    sys.stdout.flush()
    sys.exit(1)
