"""What the network's blocks report while they run: fields done, and holes they cannot reach.

A :class:`BlockObserver` is made for one infill and passed to each of its blocks (lazy
input: in the dask graph, as an argument of every block), so what a progress bar or the
command line's report reads belongs to that infill alone, with no module-level registry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any


class BlockObserver:
    """Fields done and unreachable holes, as the blocks of one infill report them.

    Blocks may run in dask's threads: every method is thread-safe. A block run in another
    process (``dask.distributed``'s workers) reports to that process's copy of the observer,
    which no one reads: progress and tallies count the blocks run in this process.

    Attributes
    ----------
    unreached : dict
        Per variable name, ``[holes, empty]``: the hole points no window of the network
        reaches (steady points left out) and the fields without any valid point, summed
        over the blocks run so far.

    Examples
    --------
    >>> observer = BlockObserver(tally=True)  # doctest: +SKIP
    >>> out, infilled = infill_variables(ds, model, observer=observer)  # doctest: +SKIP
    >>> with tqdm(total=n, unit="field") as bar, observer.listening(bar.update):  # doctest: +SKIP
    ...     out.to_netcdf("out.nc")
    """

    def __init__(self, tally: bool = False) -> None:
        #: whether blocks count their unreachable holes (the command line's report, in the
        #: pass that writes the file); the Python API counts them from the flags instead
        self.tallies = tally
        self._lock = threading.Lock()
        self._listeners: list[Callable[[int], object]] = []
        self.unreached: dict[Hashable, list[int]] = {}

    def __getstate__(self) -> dict[str, Any]:  # another process starts its own, unread
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]

    def __dask_tokenize__(self) -> str:
        """One token for every observer: a graph's names follow from its data, model and
        options alone, as they did before observers were passed."""
        return "xcrai.observer.BlockObserver"

    @contextmanager
    def listening(self, report: Callable[[int], object]) -> Iterator[None]:
        """Call ``report(n)`` as each batch of ``n`` fields leaves the network while the
        block runs (from dask's threads too): for progress bars that count fields, not
        dask's tasks."""
        with self._lock:
            self._listeners.append(report)
        try:
            yield
        finally:
            with self._lock:
                self._listeners.remove(report)

    def fields_done(self, fields: int) -> None:
        """A batch of ``fields`` left the network."""
        with self._lock:
            listeners = list(self._listeners)
        for report in listeners:
            report(fields)

    def tally(self, name: Hashable, holes: int, empty: int) -> None:
        """A block of variable ``name`` found ``holes`` unreachable hole points and
        ``empty`` fields without any valid point."""
        with self._lock:
            counts = self.unreached.setdefault(name, [0, 0])
            counts[0] += holes
            counts[1] += empty


def progress_bar_class() -> type:
    """The tqdm class for xcrai's bars: tqdm's notebook widget in Jupyter when ipywidgets
    is installed to draw it, else the text bar.

    ``tqdm.auto`` alone picks the widget in any notebook and, without ipywidgets, warns
    "IProgress not found" (from tqdm's file) before falling back to text.
    """
    from importlib.util import find_spec

    if find_spec("ipywidgets") is None:
        from tqdm.std import tqdm as text_bar

        return text_bar
    from tqdm.auto import tqdm as auto_bar

    return auto_bar
