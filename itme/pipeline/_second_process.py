"""A function of pickled inputs run by a second Python process while the run goes on.

Two parts of a run use it: the annotate stage's UMAP (:mod:`itme.pipeline._background`) and
the RNA-seq contrasts that need no CyTOF result (:mod:`itme.pipeline._rnaseq_early`). The
process is ``python -c`` (not :mod:`multiprocessing`, which would import the caller's main
script again) with this process's ``sys.path`` (e.g. a checkout on ``PYTHONPATH``), so it
runs the same code. Inputs and result pass through pickle files in a temporary folder that
is removed when the result is taken or the process is stopped; when the starting process is
gone (killed), the second one writes nothing and removes the folder itself.

:func:`one_core` is the one rule for when no second process starts.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: the command of the second process (argv: function, input file, result file, parent pid)
_ENTRY = "from itme.pipeline._second_process import main; main()"


def one_core(threads: int | None) -> bool:
    """No second process: one core (``os.cpu_count() < 2``) or the config's ``threads: 1``."""
    return (os.cpu_count() or 1) < 2 or threads == 1


def main() -> None:
    """Entry of the second process: the function of the input file's arguments, to the result file."""
    target, src, dst, parent = sys.argv[1:5]
    module, name = target.split(":")
    with open(src, "rb") as f:
        args = pickle.load(f)
    result = getattr(importlib.import_module(module), name)(*args)
    if os.getppid() != int(parent):  # the run is gone: nobody would read or remove the files
        shutil.rmtree(Path(src).parent, ignore_errors=True)
        return
    with open(dst, "wb") as f:
        pickle.dump(result, f, protocol=pickle.HIGHEST_PROTOCOL)


class SecondProcess:
    """``function(*args)`` in a new Python process, started at construction.

    Parameters
    ----------
    target
        ``"module:function"``; the function returns a picklable result.
    *args
        Its arguments (pickled to a file).
    name
        What it computes, for the log (``"embed"``, ``"rnaseq"``).
    """

    def __init__(self, target: str, *args: Any, name: str) -> None:
        self.name = name
        self.tmp = Path(tempfile.mkdtemp(prefix=f"itme-{name}-"))
        src, dst = self.tmp / "input.pickle", self.tmp / "result.pickle"
        with open(src, "wb") as f:
            pickle.dump(args, f, protocol=pickle.HIGHEST_PROTOCOL)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.started = time.perf_counter()
        with open(self.tmp / "stderr.txt", "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _ENTRY, target, str(src), str(dst), str(os.getpid())],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        self._waited = False
        self._result: Any = None

    def wait(self) -> Any:
        """The function's result, or ``None`` when the process failed (its last error line logged).

        The process is waited for once (later calls return the same result); its files are
        removed then.
        """
        if not self._waited:
            self._waited = True
            if self.proc.wait() == 0:
                with open(self.tmp / "result.pickle", "rb") as f:
                    self._result = pickle.load(f)
                logger.info(
                    "%s: second process done %.1f s after its start",
                    self.name,
                    time.perf_counter() - self.started,
                )
            else:
                lines = (self.tmp / "stderr.txt").read_text(errors="replace").strip().splitlines()
                logger.info(
                    "%s: the second process failed (exit %s: %s); computing it in this one",
                    self.name,
                    self.proc.returncode,
                    lines[-1] if lines else "no message",
                )
            self.stop()
        return self._result

    def stop(self) -> None:
        """Kill the process if it still runs and remove its files."""
        stop(self.proc, self.tmp)


def stop(proc: subprocess.Popen, tmp: Path) -> None:
    """Kill ``proc`` if it still runs; remove ``tmp`` (a function, for ``weakref.finalize``)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    shutil.rmtree(tmp, ignore_errors=True)
