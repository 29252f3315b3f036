"""One small registry type behind the three named families: margins, heads and backbones."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one ``kind`` under unique names, looked up with a plain error naming the known ones.

    ``sort``: :meth:`names` in alphabetical rather than registration order."""

    def __init__(self, kind: str, sort: bool = False) -> None:
        self.kind = kind
        self._sort = sort
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name``; ValueError if the name is taken."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def remove(self, name: str) -> T:
        """Take ``name`` out again (a test's temporary entry); ValueError if it is not there."""
        self.require(name)
        return self._entries.pop(name)

    def names(self) -> list[str]:
        return sorted(self._entries) if self._sort else list(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def get(self, name: str) -> T:
        """The entry under ``name``; ValueError naming the known ones otherwise."""
        self.require(name)
        return self._entries[name]

    def require(self, name: object) -> None:
        """ValueError ``unknown <kind> 'name'; known: ...`` unless ``name`` is registered."""
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
