"""Where a warning should point: the first line outside xcrai, the user's."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import FrameType

PACKAGE = str(Path(__file__).parent) + os.sep


def user_stacklevel() -> int:
    """The ``stacklevel`` for :func:`warnings.warn`, called from the function that warns,
    that points at the first frame outside xcrai (the user's call), however deep the
    call chain from the public function is.

    Examples
    --------
    >>> warnings.warn("odd data", UserWarning, stacklevel=user_stacklevel())  # doctest: +SKIP
    """
    frame: FrameType | None = sys._getframe(1)
    level = 1  # the function that warns is level 1
    while frame is not None and frame.f_code.co_filename.startswith(PACKAGE):
        frame, level = frame.f_back, level + 1
    return level
