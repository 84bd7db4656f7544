"""Reading the files the project consumes: UTF-8 text (a BOM accepted), CSV, JSON and YAML of a
checked shape. Every failure is a `UserError` naming the file, never a traceback.

Fact CSVs, prompt catalogues, vocabularies, the registry, run manifests, checkpoint metadata,
result summaries and dataset manifests are all read through here, so a Latin-1 or UTF-16 file,
a directory where a file belongs, a cut-off JSON file or a value of the wrong JSON type is
reported the same way everywhere: `error: <file>[:line]: <problem>; <hint>` and exit code 2.
"""
from __future__ import annotations

import csv
import functools
import io
import json
import os
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from .errors import UserError

_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number",
               bool: "true or false", type(None): "null"}


def read_text(path: str | os.PathLike) -> str:
    """The content of a UTF-8 text file (a UTF-8 BOM is dropped)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise UserError(str(path), "is a directory, expected a file") from None
    except FileNotFoundError:
        raise UserError(str(path), "file not found") from None
    except OSError as exc:
        raise UserError(str(path), f"cannot read ({exc.strerror or exc})") from None
    if data.startswith(_UTF16_BOMS):
        raise UserError(str(path), "is UTF-16 encoded, expected UTF-8", "save the file as UTF-8")
    nul = data.find(b"\0")
    if nul >= 0:      # valid UTF-8, but no text holds NUL: UTF-16 without a byte-order mark read as mangled columns
        line = data.count(b"\n", 0, nul) + 1
        raise UserError(f"{path}:{line}",
                        "contains NUL bytes: UTF-16 without a byte-order mark, or not a text file",
                        "save the file as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}", f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})",
                        "save the file as UTF-8, e.g. iconv -f latin1 -t utf-8") from None


def json_type(value: Any) -> str:
    """How a value's JSON type reads in a message ("an object", "a string", ...)."""
    return "true or false" if isinstance(value, bool) else _JSON_TYPES.get(type(value), type(value).__name__)


def require(value: Any, types: type | tuple[type, ...], where: str, hint: str | None = None) -> Any:
    """`value` when it has one of `types`; else a `UserError` naming `where` and both types, and
    `hint` (the expected shape, say). A JSON true/false is never accepted as a number."""
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        wanted = " or ".join(_JSON_TYPES.get(t, t.__name__) for t in types)
        # default=str: YAML also yields values JSON has no form for (dates, binary)
        shown = "" if value is None else " " + json.dumps(value, default=str)[:60]     # not "found null null"
        raise UserError(where, f"must be {wanted}, found {json_type(value)}{shown}", hint)
    return value


def require_fields(obj: dict, fields: dict[str, type | tuple[type, ...]], where: str, required: bool = False,
                   hint: str | None = None) -> dict:
    """Each key of `fields` that `obj` has (every key, when `required`) holds a value of its type."""
    for key, kind in fields.items():
        if required or key in obj:
            require(obj.get(key), kind, f"{where}: {key}", hint)
    return obj


def read_csv(path: str | os.PathLike) -> list[tuple[int, list[str]]]:
    """Every record of a UTF-8 CSV file with the file line it starts on (a quoted cell may span
    several lines). A record the csv module refuses (a cell over its size limit, 131072 characters)
    names the line it starts on, where a bare `csv.Error` would end in a traceback."""
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    records, line = [], 1
    try:
        for cells in reader:
            records.append((line, cells))
            line = reader.line_num + 1
    except csv.Error as exc:
        raise UserError(f"{path}:{line}", f"not a readable CSV record ({exc})",
                        "an unmatched quote makes a cell swallow the lines after it: check the quoting "
                        "from that line on") from None
    return records


def column_index(header: list[str], where: str, fields: list[str | None] | None = None) -> dict[str, int]:
    """{field: position} of a CSV header, where column i holds `fields[i]` (default: its own name;
    an importer maps aliases such as `Object` to `Fact`, and None for a column it drops). A
    nameless column (a trailing comma, pandas' index) holds no field. A field held by two columns
    is refused, naming both: a dict would keep the last one silently, and a run would go on with
    the wrong gold."""
    index: dict[str, int] = {}
    for i, name in enumerate(header if fields is None else fields):
        if not name:
            continue
        if name in index:
            first = header[index[name]]
            problem = (f"column {first!r} appears twice (columns {index[name] + 1} and {i + 1})" if first == header[i]
                       else f"columns {first!r} and {header[i]!r} both give the field {name!r}")
            raise UserError(where, problem, "keep one of them")
        index[name] = i
    return index


def read_json(path: str | os.PathLike, expect: type | tuple[type, ...] = dict, hint: str | None = None) -> Any:
    """A JSON file whose top-level value has type `expect`."""
    text = read_text(path)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(str(path), f"not valid JSON (line {exc.lineno}: {exc.msg})",
                        hint or "restore or regenerate the file") from None
    return require(value, expect, str(path))


def read_yaml(path: str | os.PathLike, expect: type | tuple[type, ...] = dict) -> Any:
    """A YAML file whose top-level value has type `expect`; a key given twice in one mapping is an
    error (YAML keeps the last silently: `hgp: {0: A, 0: B}` lost template A)."""
    import yaml

    text = read_text(path)
    try:
        value = yaml.load(text, Loader=_unique_keys_loader())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}{line}", f"not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    return require(value, expect, str(path))


@functools.lru_cache(maxsize=1)
def _unique_keys_loader():
    import yaml

    class UniqueKeysLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":      # `<<:` merges may override: allowed
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if isinstance(key, Hashable) and key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} given twice (lines {seen[key]} and {line})", key_node.start_mark)
                seen[key] = line
            return super().construct_mapping(node, deep)

    return UniqueKeysLoader
