"""The machinery behind every typed artifact: a dataclass read from and written to JSON.

A class names its file kind (`SCHEMA`, e.g. "mtg.run") and the newest version it writes
(`VERSION`). A file carries both in its `schema` field ("mtg.run/1"); a file without one is read
as version 1 (every file written before the field existed has the version-1 layout), a file of a
newer version than this code knows is refused. Each field's JSON type is checked against the
dataclass annotation (`Optional`, `list[...]`, `dict[str, ...]` and nested artifacts included),
so a damaged file is one `UserError` naming the file and key. Keys a class does not know are
kept in `extra` and written back unchanged, so rewriting a file never loses what a newer or
older writer put there. Fields marked `optional()` are left out of the file while they are None
(as the writers before this module did: `finished` of a running run, `fact_range` of an aggregate).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from .. import atomicio, textio
from ..errors import UserError

A = TypeVar("A", bound="Artifact")
_SCALARS = (str, int, float, bool)


def optional(**kwargs) -> Any:
    """A field written only while it holds a value (default None)."""
    return dataclasses.field(default=None, metadata={"omit_none": True}, **kwargs)


@dataclasses.dataclass
class Artifact:
    SCHEMA: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1

    extra: dict = dataclasses.field(default_factory=dict, repr=False, compare=False, kw_only=True)

    # ---- reading ---------------------------------------------------------------------------
    @classmethod
    def from_json(cls: type[A], data: dict, where: str) -> A:
        """The artifact of a parsed JSON object; `where` names it in errors (a path, a key)."""
        textio.require(data, dict, where)
        version = cls.version_of(data, where)
        hints = typing.get_type_hints(cls)
        values, known = {}, {"schema", "extra"}
        for f in _fields(cls):
            known.add(f.name)
            if f.name in data:
                values[f.name] = _convert(hints[f.name], data[f.name], f"{where}: {f.name}")
        artifact = cls(**values, extra={k: v for k, v in data.items() if k not in known})
        artifact.upgrade(version)
        return artifact

    @classmethod
    def version_of(cls, data: dict, where: str) -> int:
        schema = data.get("schema")
        if schema is None:
            return 1
        kind, _, number = str(schema).partition("/")
        if kind != cls.SCHEMA or not number.isdigit():
            raise UserError(f"{where}: schema", f"{schema!r} is not a {cls.SCHEMA} file",
                            f"expected {cls.SCHEMA}/1..{cls.VERSION}")
        if int(number) > cls.VERSION:
            raise UserError(f"{where}: schema", f"{schema} is newer than this code reads ({cls.SCHEMA}/{cls.VERSION})",
                            "update this checkout")
        return int(number)

    def upgrade(self, version: int) -> None:
        """Bring a file of an older `version` to the current layout (nothing to do at version 1)."""

    @classmethod
    def read(cls: type[A], path: str | Path, hint: str | None = None) -> A:
        return cls.from_json(textio.read_json(path, dict, hint), str(path))

    # ---- writing ---------------------------------------------------------------------------
    def to_json(self) -> dict:
        out: dict = {"schema": f"{self.SCHEMA}/{self.VERSION}"} if self.SCHEMA else {}
        for f in _fields(type(self)):
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            out[f.name] = _plain(value)
        return {**out, **{k: v for k, v in self.extra.items() if k not in out}}

    def write(self, path: str | Path) -> Path:
        """The file, atomically (temporary file, fsync, rename)."""
        return atomicio.write_json(path, self.to_json())


def _fields(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.name != "extra"]


def _plain(value: Any) -> Any:
    if isinstance(value, Artifact):
        return value.to_json()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _convert(hint: Any, value: Any, where: str) -> Any:
    """`value` checked against the annotation `hint` (nested artifacts built)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(inner[0], value, where)
        return textio.require(value, tuple(typing.get_origin(a) or a for a in inner), where)
    if hint is Any:
        return value
    if isinstance(hint, type) and issubclass(hint, Artifact):
        return hint.from_json(value, where)
    if origin is list:
        textio.require(value, list, where)
        return [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)] if args else value
    if origin is dict or hint is dict:
        textio.require(value, dict, where)
        return {k: _convert(args[1], v, f"{where}.{k}") for k, v in value.items()} if args else value
    if hint is float:
        return float(textio.require(value, (int, float), where))
    if hint in _SCALARS or hint is list:
        return textio.require(value, hint, where)
    raise TypeError(f"{where}: unsupported annotation {hint!r}")
