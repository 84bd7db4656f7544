"""Pending jobs run on one rank or split across the ranks of a launch (sharded evaluation).

The work is the pieces of every pending job in plan order (`tasks.pieces`: one backend call
each). They are dealt out round by round: in a round of `world` pieces, rank r runs the r-th;
rank 0 then gathers the round's records (torch.distributed.gather_object) and finishes each job
whose pieces are all in, with its records in piece order. Every piece is the same backend call
with the same batch as in a one-process run, so rank 0 writes the same result files, record for
record; results still appear job by job while the evaluation runs. With one process this is the
plain loop.
"""
from __future__ import annotations

import sys
from typing import Callable

from tqdm import tqdm

from .. import distributed
from . import tasks
from .plan import Job


def run(jobs: list[Job], backend, tokenizer, cfg, bos: list[int],
        finish: Callable[[Job, list[dict]], None] | None) -> None:
    """Run `jobs`; on rank 0 call `finish(job, records)` for each, in plan order (other ranks: None)."""
    world, rank = distributed.world()
    items = [(j, piece) for j, job in enumerate(jobs) for piece in tasks.pieces(job, backend)]
    left = [len(tasks.pieces(job, backend)) for job in jobs]
    records: list[list[dict]] = [[] for _ in jobs]
    bar = tqdm(total=len(items), desc="evaluating", unit="piece", file=sys.stderr, leave=False,
               disable=rank != 0 or not sys.stderr.isatty())
    next_job = _finish_ready(jobs, left, records, 0, finish)
    for start in range(0, len(items), world):
        round_ = items[start:start + world]
        mine = None
        if rank < len(round_):
            j, piece = round_[rank]
            mine = tasks.RUNNERS[jobs[j].task](jobs[j], piece, backend, tokenizer, cfg, bos)
        gathered = _gather(mine, world, rank)
        if rank == 0:
            for (j, _), out in zip(round_, gathered):
                records[j] += out
                left[j] -= 1
            bar.update(len(round_))
            bar.set_postfix_str(f"{jobs[round_[-1][0]].task} {jobs[round_[-1][0]].prompt_type}")
            next_job = _finish_ready(jobs, left, records, next_job, finish)
    bar.close()


def _finish_ready(jobs: list[Job], left: list[int], records: list[list[dict]], first: int, finish) -> int:
    """Finish the jobs from `first` on whose pieces are all in; returns the first unfinished job."""
    while first < len(jobs) and left[first] == 0:
        if finish is not None:
            finish(jobs[first], records[first])
        records[first] = []
        first += 1
    return first


def _gather(mine, world: int, rank: int) -> list:
    if world == 1:
        return [mine]
    import torch.distributed as dist

    out = [None] * world if rank == 0 else None
    dist.gather_object(mine, out, dst=0)
    return out
