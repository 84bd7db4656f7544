"""The relation-id syntax of `data.relation_id` (SPEC §5.3), parsed in one place.

- `a+b+c`: several relations (training trains them together; evaluation scores each separately);
- `a&b`: a composition, fact i of a with fact i of b (training only);
- `a-b`: one atomic composite id (two-hop data), never a range.

CLI for the shell drivers: `python -m util_public.relspec SPEC` prints every atomic id, one a line.
"""
from __future__ import annotations

import argparse
import sys

from .errors import UserError

HINT = "use forms like 50, 12+21+50 or 21&105"


def groups(spec: str, where: str = "data.relation_id") -> list[tuple[str, ...]]:
    """`12+21&105` -> [("12",), ("21", "105")]; an empty part, or one given twice, is an error
    (evaluation planned `50+50` as two identical jobs)."""
    out = []
    for part in str(spec).strip().split("+"):
        ids = tuple(p.strip() for p in part.split("&"))
        if not part.strip() or any(not i for i in ids):
            raise UserError(where, f"{spec!r} has an empty part", HINT)
        if ids in out:
            raise UserError(where, f"{spec!r} names {'&'.join(ids)} twice", "list each relation once")
        out.append(ids)
    return out


def atomic(spec: str, where: str = "data.relation_id") -> list[str]:
    """Every relation id the spec names, in order, each once."""
    return list(dict.fromkeys(i for ids in groups(spec, where) for i in ids))


def separate(spec: str, where: str = "data.relation_id") -> list[str]:
    """The relations of an `a+b+c` spec, for stages that treat each on its own (compositions refused)."""
    if "&" in str(spec):
        raise UserError(where, f"{str(spec).strip()!r}: compositions (a&b) are a training format",
                        "evaluate each relation, or the derived two-hop dataset (e.g. 105-21)")
    return [ids[0] for ids in groups(spec, where)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m util_public.relspec",
                                     description="Print every atomic relation id of SPEC, one a line.")
    parser.add_argument("spec", help=HINT)
    print("\n".join(atomic(parser.parse_args(sys.argv[1:] if argv is None else argv).spec)))
    return 0


if __name__ == "__main__":
    from .errors import exit_on_user_error

    sys.exit(exit_on_user_error(main))
