"""Which facts a stage trains on: the relations of `data.relation_id` (`relspec`) and the fact range.

`a+b+c` trains several relations together (the range applies to each relation's fact_ids);
`a&b` composes relations fact by fact (fact i of a with fact i of b, both must have it).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import catalogue, facts as factio, known, relspec
from ..errors import UserError, under
from ..facts import Fact


@dataclass
class Group:
    """One `+`-part of the relation spec: an atomic relation, or a composition `a&b`."""
    relation_ids: tuple[str, ...]          # one id, or the composed ids in order
    rows: list[tuple[Fact, ...]]           # per fact_id: one Fact per relation id

    @property
    def name(self) -> str:
        return "&".join(self.relation_ids)


@dataclass
class Selection:
    spec: str
    groups: list[Group]
    input_files: list[Path]                # fact CSVs and catalogues: the data fingerprint

    def atomic_relations(self) -> list[str]:
        seen: list[str] = []
        for group in self.groups:
            seen += [r for r in group.relation_ids if r not in seen]
        return seen

    def fact_range(self) -> tuple[int, int]:
        """(first, last) fact_id over the selection, for the run name."""
        ids = [row[0].fact_id for group in self.groups for row in group.rows]
        return min(ids), max(ids)


def load(spec: str, data_root: Path, dataset: str, begin: int, end: int | None) -> Selection:
    """Load and range-select the facts of every relation in `spec`."""
    groups, files = [], []
    for ids in relspec.groups(spec):
        per_relation = []
        for rel in ids:
            # Training never reads the options, so option checks are left to evaluation.
            chosen = factio.select(factio.load_relation(data_root, dataset, rel, num_options=None,
                                                        substring_rule="off"),
                                   begin, end, f"data.relation_id {rel}: data.index_begin/index_end")
            per_relation.append({f.fact_id: f for f in chosen})
            files.append(factio.relation_file(data_root, dataset, rel))
            files.append(catalogue.prompts_file(rel, data_root))
        groups.append(Group(ids, _pair(ids, per_relation, data_root, dataset)))
    files += catalogue.relations_files(data_root)
    return Selection(spec, groups, [f for f in dict.fromkeys(files) if f.is_file()])


def rehearsal(rel: str, begin: int, end: int | None, data_root: Path, where: str) -> Selection:
    """The real facts of one `data.rehearsal` source (known.REHEARSAL), range-selected."""
    with under(where):
        chosen = factio.select(known.facts(rel, None, 0, dataset=known.REHEARSAL), begin, end, "index_begin/index_end")
    files = [known.path(rel, known.REHEARSAL), known.path(rel), catalogue.prompts_file(rel, data_root),
             *catalogue.relations_files(data_root)]
    return Selection(rel, [Group((rel,), [(f,) for f in chosen])], [f for f in dict.fromkeys(files) if f.is_file()])


def _pair(ids: tuple[str, ...], per_relation: list[dict[int, Fact]], data_root: Path,
          dataset: str) -> list[tuple[Fact, ...]]:
    """Rows of a group; a composition needs the same fact_ids in every relation's range."""
    common = set(per_relation[0])
    for table in per_relation[1:]:
        common &= set(table)
    for rel, table in zip(ids, per_relation):
        missing = sorted(set().union(*per_relation) - set(table))
        if missing:
            files = ", ".join(str(factio.relation_file(data_root, dataset, r)) for r in ids)
            raise UserError(f"data.relation_id {'&'.join(ids)}",
                            f"relation {rel} lacks fact_ids {missing[:10]} present in the others ({files})")
    return [tuple(table[i] for table in per_relation) for i in sorted(common)]
