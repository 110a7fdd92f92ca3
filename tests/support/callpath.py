"""The path of one command or event through a service's files, as it runs (docs/architecture.md, "Measured").

:class:`CallPath` profiles the calls made while a root function (a route, an event handler) is on the stack and
keeps, for each call into a file of ``services/``, the chain of service files from the root down to it (frames of
``shared/`` and libraries are skipped, the chain follows ``await`` as well as plain calls). From those chains:

- :attr:`files`, the service files the path crosses;
- :meth:`returns`, the chains in which a file appears again after the path left it for another one (``a → b → a``);
- :meth:`climbs`, two files that call each other (in any two chains): the files are not in one top-to-bottom order.

Only for tests of the architecture: profiling slows every call down.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

SERVICES = str(Path(__file__).resolve().parents[2] / "services") + "/"


def _relative(filename: str) -> str:
    return "services/" + filename[len(SERVICES):]


class CallPath:
    def __init__(self, root: Callable[..., Any]):
        self.root = getattr(root, "__wrapped__", root).__code__
        self.chains: set[tuple[str, ...]] = set()
        self._order: dict[str, None] = {}

    def _profile(self, frame: FrameType, event: str, _arg: Any) -> None:
        if event != "call" or not frame.f_code.co_filename.startswith(SERVICES):
            return
        chain: list[str] = []
        current: FrameType | None = frame
        while current is not None:
            filename = current.f_code.co_filename
            if filename.startswith(SERVICES) and (not chain or chain[-1] != filename):
                chain.append(filename)
            if current.f_code is self.root:
                found = tuple(_relative(f) for f in reversed(chain))
                self.chains.add(found)
                for file in found:
                    self._order.setdefault(file, None)
                return
            current = current.f_back

    def recording(self) -> AbstractContextManager[None]:
        return recording(self)

    @property
    def files(self) -> list[str]:
        """The service files the path crosses, in the order it first reaches them."""
        return list(self._order)

    @property
    def calls(self) -> set[tuple[str, str]]:
        """``(caller file, callee file)`` for every step from one file down to another."""
        return {(a, b) for chain in self.chains for a, b in itertools.pairwise(chain)}

    def returns(self) -> list[tuple[str, ...]]:
        """The chains that come back to a file they had left (``a → b → a``)."""
        return sorted(chain for chain in self.chains if len(set(chain)) < len(chain))

    def climbs(self) -> list[tuple[str, str]]:
        """Steps back up: ``b → a`` where the path also steps ``a → b`` (the files are not in one order)."""
        return sorted((b, a) for a, b in self.calls if (b, a) in self.calls and a < b)


@contextmanager
def recording(*paths: CallPath) -> Iterator[None]:
    """Record ``paths`` together (one profiler per thread: several roots share it)."""

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        for path in paths:
            path._profile(frame, event, arg)

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield
    finally:
        sys.setprofile(previous)
