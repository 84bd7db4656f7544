"""IC-LKE many-shot contexts (SPEC §6.7): "S1{sep}O1, S2{sep}O2, ..., S_q".

The scorer appends the option with one `{sep}`, so a context never ends with the separator (the
original's "S_q{sep}{sep}O" artefact). The query fact is never one of its own examples unless
`exclude_query` is off. Examples come from one seeded permutation shared by all queries
(`resample_per_query: false`, as the original) or from each fact's own stream.
"""
from __future__ import annotations

from pathlib import Path

from .. import facts as factio
from .. import paths, seeding
from ..errors import UserError
from ..facts import Fact, norm
from .schema import IcLkeCfg


def load_pool(source: str, query_facts: list[Fact], data_root: Path, relation_id: str) -> list[Fact]:
    """The example pool: the evaluated relation's file (`same`), another dataset, or a CSV path."""
    if source == "same":
        return query_facts
    if source.endswith(".csv"):
        return factio.read_facts(paths.resolve(source), num_options=None, substring_rule="off")
    return factio.load_relation(data_root, source, relation_id, num_options=None, substring_rule="off")


def example_ids(query: Fact, pool: list[Fact], cfg: IcLkeCfg, relation_id: str) -> list[int]:
    """Positions in `pool` of the examples shown before `query`, in prompt order. With
    `exclude_query`, no example is about the query's subject: matched by the subject itself, since
    a pool from a CSV file or another dataset numbers and names its facts its own way (matching
    fact_id and relation_id let a CSV copy of the evaluated facts show each query its answer)."""
    subject = norm(query.head)
    allowed = [i for i, f in enumerate(pool) if not (cfg.exclude_query and norm(f.head) == subject)]
    if len(allowed) < cfg.example_num:
        raise UserError("ic_lke.example_num", f"{cfg.example_num} examples requested for fact_id {query.fact_id}, "
                        f"but the pool has only {len(allowed)} usable facts",
                        "lower ic_lke.example_num or use a larger ic_lke.example_source")
    if cfg.resample_per_query:
        rng = seeding.stream(cfg.seed, "ic_lke.examples", relation_id, query.fact_id)
        return [allowed[i] for i in rng.choice(len(allowed), size=cfg.example_num, replace=False)]
    order = seeding.stream(cfg.seed, "ic_lke.examples", relation_id).permutation(len(pool))
    allowed_set = set(allowed)
    return [int(i) for i in order if i in allowed_set][:cfg.example_num]


def context(query: Fact, pool: list[Fact], cfg: IcLkeCfg, separator: str, relation_id: str) -> str:
    """The many-shot context for one query fact (no trailing separator)."""
    shots = []
    for i in example_ids(query, pool, cfg, relation_id):
        ex = pool[i]
        pair = (ex.object, ex.head) if cfg.reverse else (ex.head, ex.object)
        shots.append(f"{pair[0]}{separator}{pair[1]}")
    return ", ".join([*shots, query.head])
