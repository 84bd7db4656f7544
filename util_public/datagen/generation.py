"""`mode: generate` (SPEC §4.2-4.5): fictional subjects, sampled objects, 99 distractors, optional
wiki paragraphs, for every requested relation.

Order of work: validate everything that can be checked without generating (relations, vocabulary
sizes, subject file, LLM settings and templates, existing files), then build each relation's facts
in memory. Nothing is written here; `run.py` hands the planned outputs to `outputs.write`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .. import catalogue, objectcase, packages, paths, textio
from ..atomicio import check_writable_dir
from ..errors import UserError
from ..facts import Fact, norm, relation_file
from ..seeding import stream
from . import importer, llm, names, vocab, wiki
from .distractors import DistractorPool, draw_distractors
from .outputs import Output, append, existing_facts, next_fact_id
from .schema import GenConfig


@dataclass
class RelationJob:
    relation_id: str
    meta: dict
    path: Path
    existing: list[Fact]
    vocab: vocab.Vocabulary | None = None


class Generator:
    def __init__(self, cfg: GenConfig, data_root: Path, http_client=None):
        self.cfg, self.data_root = cfg, data_root
        self.dataset_dir = data_root / cfg.dataset
        self.chat: llm.Chat | None = None
        self._http_client = http_client       # tests inject a mock transport here

    # -- validation -------------------------------------------------------------------------------
    def uses_llm(self) -> bool:
        c = self.cfg
        return (c.subjects.source == "llm" or c.objects.vocab_source == "llm"
                or (c.wiki.enabled and c.wiki.source == "llm"))

    def plan_jobs(self) -> list[RelationJob]:
        """Every check that needs no generation; raises before anything is written."""
        c = self.cfg
        jobs = []
        for rel in c.relation_ids:
            meta = catalogue.relation(rel, self.data_root)
            if meta.get("derived_from"):      # its facts follow from its sources' facts
                sources = meta["derived_from"] if isinstance(meta["derived_from"], list) else [meta["derived_from"]]
                raise UserError(f"relation {rel!r}", f"is derived ({meta.get('derive_kind')}) from {', '.join(sources)}; "
                                "generated facts would have no link to them",
                                f"generate {' and '.join(sources)}, then mode=derive derive.kind={meta.get('derive_kind')}")
            path = relation_file(self.data_root, c.dataset, rel)
            jobs.append(RelationJob(rel, meta, path, existing_facts(path, c.on_exists, c.num_options)))
            _check_same_case(jobs[-1], c.objects.case)
        if c.subjects.source == "file":
            if not c.subjects.file:
                raise UserError("subjects.file", "must be set when subjects.source=file")
            vocab.read_lines(paths.resolve(c.subjects.file), "subjects.file")
        if c.objects.vocab_source != "llm":
            for job in jobs:
                job.vocab = self.vocabulary(job)
        if self.uses_llm():
            packages.require("openai", "llm.client")
            llm.check_template(c.llm.prompt_template, "llm.prompt_template", llm.NAME_FIELDS, ["n", "entity_type"])
            if c.wiki.enabled and c.wiki.source == "llm":
                llm.check_template(c.wiki.prompt_template, "wiki.prompt_template", llm.WIKI_FIELDS, ["head", "object"])
            connection = llm.connect(c.llm, http_client=self._http_client)
            # The cache lives in the dataset directory, so it must be writable before any request.
            check_writable_dir(self.dataset_dir, "output_dir")
            self.chat = llm.Chat(connection, c.llm, llm.ReplayCache(self.cache_path(), c.llm.cache))
        return jobs

    def cache_path(self) -> Path:
        return self.dataset_dir / "llm_cache.jsonl"

    def vocabulary(self, job: RelationJob) -> vocab.Vocabulary:
        v = vocab.build(self.cfg, job.relation_id, self.data_root, llm_objects=self._llm_objects)
        vocab.check_size(v, self.cfg.num_options, job.relation_id)
        return v

    # -- generation -------------------------------------------------------------------------------
    def run(self) -> list[Output]:
        jobs = self.plan_jobs()
        outputs = []
        for job in jobs:
            if job.vocab is None:
                job.vocab = self.vocabulary(job)
            new = self.relation_facts(job)
            notes = {"vocab_source": job.vocab.source, "vocab_size": len(job.vocab.words), "new_facts": len(new)}
            outputs.append(Output.facts(job.path, append(job.existing, new, str(job.path)), notes))
        return outputs

    def relation_facts(self, job: RelationJob) -> list[Fact]:
        c, rel = self.cfg, job.relation_id
        start = next_fact_id(job.existing)
        fact_ids = list(range(start, start + c.num_facts))
        guard = names.VocabGuard(job.vocab.words)
        heads = self.subjects(job, guard, c.num_facts)
        objects = vocab.assign(job.vocab.words, fact_ids, c.seed, rel, c.objects.unique,
                               taken=[f.object for f in job.existing])
        pool = DistractorPool(job.vocab.words)
        facts = [Fact(fid, rel, head, obj, draw_distractors(pool, obj, c.num_options - 1, c.seed, rel, fid))
                 for fid, head, obj in tqdm(list(zip(fact_ids, heads, objects)), desc=f"facts {rel}",
                                            disable=None, leave=False)]
        return self.with_wiki(job, facts) if c.wiki.enabled else facts

    def subjects(self, job: RelationJob, guard: names.VocabGuard, n: int) -> list[str]:
        c, rel, meta = self.cfg, job.relation_id, job.meta
        taken = [f.head for f in job.existing]
        accept = lambda name: guard.clash(name) is None   # noqa: E731 - the subject/object rule
        if c.subjects.source == "offline":
            kind = meta.get("subject_kind") or names.kind_for_type(meta.get("subject_type") or "entity")
            # Conflict-free: no subject inside another, so subject spans and reversed options stay clean.
            return names.generate(kind, n, stream(c.seed, "subjects", rel), accept, taken=taken,
                                  conflict_free=True)
        if c.subjects.source == "file":
            return self._file_subjects(guard, n, taken)
        examples = (importer.trex_mc_heads(paths.resolve(c.objects.trex_mc_path), rel, c.import_)
                    if c.objects.trex_mc_path else list(meta.get("example_heads") or []))
        # Subjects must be fictional, and a model asked for made-up countries still answers "Norway" or
        # "Israel wine": a name near one of the catalogue's real named entities, or containing one, is refused.
        real = self.real_entities()
        near, inside = names.NearDuplicates(real), names.VocabGuard(real)
        return llm.request_names(self.chat, n, meta.get("subject_type") or "entity", examples,
                                 stream(c.seed, "llm-subjects", rel),
                                 lambda name: accept(name) and near.match(name) is None and inside.clash(name) is None,
                                 taken=taken, label=f"subjects {rel}")

    def real_entities(self) -> list[str]:
        """The catalogue's real named entities: the object vocabularies of places, people and
        organisations (not genres, classes or occupations, whose words fictional titles may use)."""
        return [word for rid, rel in catalogue.relations(self.data_root).items()
                if rel.get("vocab") and names.kind_for_type(rel.get("object_type") or "") != "entity"
                for word in catalogue.vocab(rid, self.data_root)]

    def _file_subjects(self, guard: names.VocabGuard, n: int, taken: list[str]) -> list[str]:
        path = paths.resolve(self.cfg.subjects.file)
        seen = {norm(t): "the existing file" for t in taken}
        out: list[str] = []
        lines = textio.read_text(path).splitlines()
        for lineno, raw in enumerate(lines, 1):
            name = raw.strip()
            if not name:
                continue
            where = f"subjects.file: {path}:{lineno}"
            problem = names.shape_problem(name)
            clash = guard.clash(name)
            if problem or clash:
                raise UserError(where, f"subject {name!r}: " + (problem or f"clashes with the object {clash!r}"))
            if norm(name) in seen:
                raise UserError(where, f"subject {name!r} repeats one from {seen[norm(name)]}")
            seen[norm(name)] = f"line {lineno}"
            out.append(name)
            if len(out) == n:
                return out
        raise UserError(f"subjects.file: {path}", f"{len(out)} subjects, num_facts needs {n}")

    def _llm_objects(self, relation_id: str, n: int) -> list[str]:
        meta = catalogue.relation(relation_id, self.data_root)
        try:
            examples = catalogue.vocab(relation_id, self.data_root)
        except UserError:
            examples = []
        made = llm.request_names(self.chat, n, meta.get("object_type") or "entity", examples,
                                 stream(self.cfg.seed, "llm-objects", relation_id), lambda name: True,
                                 label=f"objects {relation_id}")
        return [m.lower() for m in made]

    def with_wiki(self, job: RelationJob, facts: list[Fact]) -> list[Fact]:
        """Set each fact's `Text`; a fact whose paragraph lacks the object fails or is skipped."""
        c, rel, out = self.cfg, job.relation_id, []
        for f in tqdm(facts, desc=f"wiki {rel}", disable=None, leave=False):
            text = wiki.paragraph(f.head, f.object, job.meta, c.seed, rel, f.fact_id)
            if c.wiki.source == "llm":
                # The template paragraph of the same fact is the example the model must rephrase.
                values = {"head": f.head, "subject_type": job.meta.get("subject_type") or "entity",
                          "object_type": job.meta.get("object_type") or "entity", "object": f.object,
                          "example": text or ""}
                text = llm.request_paragraph(self.chat, c.wiki.prompt_template, values, f.object,
                                             c.wiki.max_attempts, stream(c.seed, "llm-wiki", rel, f.fact_id))
            if text is None:
                if c.wiki.on_missing_object == "skip":
                    continue
                raise UserError(f"relation {rel}: fact_id {f.fact_id}",
                                f"no wiki paragraph mentioning the object {f.object!r} "
                                f"({c.wiki.source} source, {c.wiki.max_attempts} attempts for llm)",
                                "set wiki.on_missing_object=skip to drop such facts")
            f.text = text
            out.append(f)
        return out


def _check_same_case(job: RelationJob, case: str) -> None:
    """Appending writes new objects as `case` does; a file whose objects are all in the other
    spelling would end up with both, which training and scoring read as different names. (A file of
    mixed spellings, such as imported real names, is appended to as it is.)"""
    def other_spelling(obj: str) -> bool:
        low = obj.lower()
        return obj != low if case == "as_is" else obj == low != objectcase.title(low)

    other = [f for f in job.existing if other_spelling(f.object)]
    if other and len(other) == len(job.existing):
        raise UserError(f"{job.path}: fact_id {other[0].fact_id}",
                        f"its object {other[0].object!r}, like every object there, is not written as "
                        f"objects.case={case} writes objects",
                        "append with the file's own spelling (objects.case), or generate into a new dataset")
