"""Work-arounds for the Qt binding this package runs on; import before using PySide6 widgets.

PySide6 6.12 on CPython 3.11 releases one reference to ``None`` too many on every call of a
C++ method returning ``void`` (``setText``, ``setData``, ``insertRow`` ...), and likewise to
``True``/``False`` on some paths: a GUI makes thousands such calls a second, and within seconds
a count reaches zero and the interpreter aborts ("none_dealloc: deallocating None",
"bool_dealloc"). CPython 3.12 made these singletons immortal (their counts are never changed),
which is why the binding gets away with it there. :func:`keep_none_alive` does the same for
older interpreters: it adds 2**40 references to each once — at a million leaking calls a
second that lasts twelve days, and the window tops it up on every refresh.
"""

from __future__ import annotations

import ctypes
import sys

_MARGIN = 1 << 40


def keep_none_alive() -> None:
    """Make the reference counts of ``None``, ``True`` and ``False`` effectively immortal
    (no-op on CPython >= 3.12, where they are)."""
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return
    for singleton in (None, True, False):
        refcount = ctypes.c_ssize_t.from_address(id(singleton))  # ob_refcnt: the first field
        if refcount.value < _MARGIN:
            refcount.value += _MARGIN


keep_none_alive()
