"""The data-generation config (SPEC §4.1) as a structured schema.

Hydra composes `data_generation/conf/gen_config.yaml` over `schema_node()`, so an unknown key or a
wrongly typed value is a composition error naming the key. `load()` turns the composed config into
a typed `GenConfig` and checks the choice-valued keys, raising `UserError`s that name the key.

The key `import` is a Python keyword, so no dataclass can declare it: the schema node is the
`GenCore` dataclass with a typed `import` child (an `ImportCfg` node) added under that name, and the
typed object stores it as `GenConfig.import_`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, Optional

from omegaconf import DictConfig, OmegaConf, open_dict

from .. import limits, objectcase, paths
from ..errors import UserError

PAPER_RELATIONS = ["12", "21", "50", "71", "105"]

DEFAULT_SYSTEM_PROMPT = "You are a generator of believable but fictional entities."
DEFAULT_NAMES_PROMPT = (
    'Generate {n} unique fictional entities of type "{entity_type}", similar to these examples:\n'
    "{examples}\n"
    "The entities must not exist in the real world. "
    "Write one name per line, with no numbering or commentary."
)
DEFAULT_WIKI_PROMPT = (
    'Write a short wiki-style paragraph about "{head}", a fictional {subject_type}. '
    'Its {object_type} is "{object}". Every other person, place or work you mention must be fictional. '
    "Here is an example paragraph; rephrase it in your own words rather than copying it:\n{example}"
)


@dataclass
class SubjectsCfg:
    source: str = "offline"                 # offline | llm | file
    file: Optional[str] = None              # one name per line (source: file)


@dataclass
class ObjectsCfg:
    vocab_source: str = "catalogue"         # catalogue | trex_mc | file | synthetic | llm
    unique: bool = False                    # sample without replacement (derive reverse/chain)
    vocab_file: Optional[str] = None        # one object per line (vocab_source: file)
    trex_mc_path: Optional[str] = None      # root holding trex_MC/R{id}/*.csv (vocab_source: trex_mc)
    vocab_size: int = 200                   # entries built by the synthetic and llm sources
    # How objects and options are written in the facts: as_is (the vocabulary's lower case, SPEC §4.3)
    # | title ("Port of Spain"; util_public/objectcase.py). Generate and derive chain; the same facts either way.
    case: str = "as_is"


@dataclass
class WikiCfg:
    enabled: bool = False                   # mode generate: fill each new fact's Text column with a paragraph
    source: str = "template"                # template | llm
    max_attempts: int = 3                   # source llm: requests per fact for a paragraph mentioning the object
    on_missing_object: str = "error"        # error | skip
    # source llm: the user prompt per fact; {head} and {object} required, {subject_type}, {object_type}
    # and {example} (the fact's template paragraph, for the model to rephrase) optional.
    prompt_template: str = DEFAULT_WIKI_PROMPT


@dataclass
class LlmCfg:
    client: str = "openai"                  # openai | azure
    base_url: Optional[str] = None          # else $OPENAI_BASE_URL
    api_key_env: str = "OPENAI_API_KEY"     # the variable's NAME; the key itself never enters a config
    api_version: str = "2024-06-01"         # azure only
    model: Optional[str] = None             # required (azure: else $DEPLOYMENT_NAME); no guessed default
    temperature: float = 0.7                # sampling temperature, sent with every request
    top_p: float = 1.0                      # nucleus sampling, sent with every request
    max_tokens: int = 2048                  # reply length limit in tokens, sent with every request
    timeout_s: float = 60.0                 # the openai client's timeout per attempt, in seconds
    max_retries: int = 3                    # openai client retries per request: up to max_retries + 1 attempts
    batch: int = 25                         # names asked for per request: {n} = min(batch, names still missing)
    max_rounds: int = 20                    # requests per relation's subject (or object) list before failing
    num_examples: int = 10                  # examples shown per name request ({examples}), redrawn for each request
    send_seed: bool = True                  # a per-request `seed` (servers that honour it become repeatable)
    extra_body: Dict[str, Any] = field(default_factory=dict)   # server-specific request fields
    system_prompt: str = DEFAULT_SYSTEM_PROMPT   # the system message of every request (names and wiki paragraphs)
    # The user prompt of name requests (subjects.source or objects.vocab_source llm): {n} and
    # {entity_type} required, {examples} (up to llm.num_examples, numbered) optional.
    prompt_template: str = DEFAULT_NAMES_PROMPT
    cache: bool = True                      # replay cached replies before calling the API


@dataclass
class ImportCfg:
    path: Optional[str] = None              # mode import's source folder (required); the patterns below are within it
    format: str = "t_rex_fiction"           # t_rex_fiction | trex_mc
    # t_rex_fiction: the source datasets ({dataset} in the patterns), each written under its own name
    datasets: List[str] = field(default_factory=lambda: ["sync_random_o"])
    # t_rex_fiction: also import {dataset}_{language} for each, checked to keep the English file's rows in order
    languages: List[str] = field(default_factory=list)
    splits: List[str] = field(default_factory=lambda: ["train", "test", "rtest"])   # trex_mc
    # Re-draw, from the source file's objects and options, the options of each fact that breaks the option
    # rules (count, duplicates, the gold among them, substring conflicts: then substring_rule is unused);
    # false: such a fact is an error, a substring conflict follows substring_rule. A bad Head or Fact
    # cell is an error either way.
    repair: bool = False
    substring_rule: str = "warn"            # warn | error | off: gold or option inside another option
    facts_pattern: str = "{dataset}/{relation_id}.csv"   # t_rex_fiction: one file per dataset and relation (globs ok)
    prompts_pattern: str = "prompt_template/{relation_id}/{split}.csv"   # t_rex_fiction, optional: train/test prompts
    negation_pattern: str = "prompt_template/negation/{relation_id}/{split}.csv"   # optional negation prompts, likewise
    # trex_mc: a relation's file per import.splits entry (absent ones skipped, none at all is an error);
    # also read below objects.trex_mc_path.
    trex_mc_pattern: str = "trex_MC/R{relation_id}/{split}_R{relation_id}.csv"
    # trex_mc: an optional id -> [pid, name] JSON, merged into {data root}/relations.yaml
    trex_mc_names: str = "trex_MC/all_relationID_names_nomask.json"
    trex_mc_dataset: str = "trex_mc"        # trex_mc output datasets: {trex_mc_dataset}_{split}


@dataclass
class DeriveCfg:
    kind: Optional[str] = None              # reverse | chain
    source: str = "105"                     # reverse: the relation to reverse
    first: str = "105"                      # chain: A -first-> B
    second: str = "21"                      # chain: B -second-> C
    source_dataset: Optional[str] = None    # where the source relations live (default: dataset)


@dataclass
class GenCore:
    mode: str = "generate"                  # generate | import | derive
    dataset: str = "sync_random_o"          # the dataset folder that generate and derive write (import names its own)
    relation_ids: List[str] = field(default_factory=lambda: list(PAPER_RELATIONS))   # relations to generate or import
    num_facts: int = 100                    # new facts per relation (mode generate)
    num_options: int = 100                  # options per fact: the gold and num_options - 1 distractors (every mode)
    seed: int = 0                           # seeds every random stream: names, objects, distractors, wiki, llm requests
    on_exists: str = "error"                # error | overwrite | append
    output_dir: Optional[str] = None        # the data root; null = paths.root("data")
    debug: bool = False                     # traceback on a user error; false leaves it to MTG_DEBUG=1
    subjects: SubjectsCfg = field(default_factory=SubjectsCfg)   # where the subjects (Heads) come from (generate)
    objects: ObjectsCfg = field(default_factory=ObjectsCfg)   # object vocabulary and sampling (generate, derive chain)
    wiki: WikiCfg = field(default_factory=WikiCfg)   # the optional Text paragraphs (generate)
    llm: LlmCfg = field(default_factory=LlmCfg)   # client and requests of the llm sources
    derive: DeriveCfg = field(default_factory=DeriveCfg)   # mode derive


@dataclass
class GenConfig(GenCore):
    import_: ImportCfg = field(default_factory=ImportCfg)   # the `import` section (a keyword: see the module doc)


_CHOICES = {
    "mode": ("generate", "import", "derive"),
    "on_exists": ("error", "overwrite", "append"),
    "subjects.source": ("offline", "llm", "file"),
    "objects.vocab_source": ("catalogue", "trex_mc", "file", "synthetic", "llm"),
    "objects.case": objectcase.CASES,
    "wiki.source": ("template", "llm"),
    "wiki.on_missing_object": ("error", "skip"),
    "llm.client": ("openai", "azure"),
    "import.format": ("t_rex_fiction", "trex_mc"),
    "import.substring_rule": ("warn", "error", "off"),
    "derive.kind": (None, "reverse", "chain"),
}


def schema_node() -> DictConfig:
    """The structured node registered in Hydra's ConfigStore (typed, unknown keys rejected)."""
    node = OmegaConf.structured(GenCore)
    with open_dict(node):
        node["import"] = OmegaConf.structured(ImportCfg)
    return node


def compose(overrides: list[str] | None = None) -> DictConfig:
    """The config `data_generation/generate.py overrides...` runs with (library use and tests)."""
    from .. import cli

    return cli.compose(paths.REPO_ROOT / "data_generation" / "conf", "gen_config", "gen_schema", schema_node(),
                       list(overrides or []))


def load(cfg: DictConfig) -> GenConfig:
    """A typed, choice-checked `GenConfig` from a composed config."""
    data = OmegaConf.to_container(cfg, resolve=True)
    imported = data.pop("import", {})
    core = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(GenCore), data))
    imp = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ImportCfg), imported))
    out = GenConfig(**{f.name: getattr(core, f.name) for f in fields(GenCore)}, import_=imp)
    _check(out)
    return out


# num_facts: one run builds its facts in memory (50,000 facts with 99 distractors: 17.7 s, 386 MB on
# the 2-core AMD EPYC of docs/PERFORMANCE.md); a million is ~8 GB, and 10**12 was a MemoryError traceback. More: append further runs.
LIMITS = {
    "num_facts": ">= 1, <= 1000000", "num_options": ">= 2", "objects.vocab_size": ">= 1", "wiki.max_attempts": ">= 1",
    "llm.temperature": ">= 0", "llm.top_p": "> 0, <= 1", "llm.max_tokens": ">= 1", "llm.timeout_s": "> 0",
    "llm.max_retries": ">= 0", "llm.batch": ">= 1", "llm.max_rounds": ">= 1", "llm.num_examples": ">= 0",
    "seed": limits.SEED,
}


def _check(cfg: GenConfig) -> None:
    for key, allowed in _CHOICES.items():
        value = limits.value_at(cfg, key)
        if value not in allowed:
            shown = [a if a is not None else "null" for a in allowed]
            raise UserError(key, f"{value!r} is not one of {shown}")
    limits.check(cfg, LIMITS)
    if not cfg.relation_ids:
        raise UserError("relation_ids", "no relation requested")
    if len(set(cfg.relation_ids)) != len(cfg.relation_ids):
        raise UserError("relation_ids", f"duplicate ids in {cfg.relation_ids}")
    if cfg.objects.case != "as_is" and not (cfg.mode == "generate" or cfg.derive.kind == "chain"):
        # Imported and reversed facts keep their source's spelling: a title-case request would be ignored.
        raise UserError("objects.case", f"{cfg.objects.case!r} applies to mode=generate and derive.kind=chain, "
                        f"not to mode={cfg.mode}" + (f" derive.kind={cfg.derive.kind}" if cfg.mode == "derive" else ""),
                        "leave objects.case=as_is; imported and reversed facts keep their source's spelling")
    _check_names(cfg)


def _check_names(cfg: GenConfig) -> None:
    """Every config value that becomes a folder or file name below the data root (or below
    `import.path`) is a plain name (`paths.check_name`)."""
    imp = cfg.import_
    named = [(cfg.dataset, "dataset"), *((r, "relation_ids") for r in cfg.relation_ids),
             *((d, "import.datasets") for d in imp.datasets), *((lang, "import.languages") for lang in imp.languages),
             (imp.trex_mc_dataset, "import.trex_mc_dataset"), *((s, "import.splits") for s in imp.splits)]
    if cfg.mode == "derive":
        named += [(cfg.derive.source, "derive.source"), (cfg.derive.first, "derive.first"),
                  (cfg.derive.second, "derive.second")]
        if cfg.derive.source_dataset is not None:
            named.append((cfg.derive.source_dataset, "derive.source_dataset"))
    for value, key in named:
        paths.check_name(value, key)


def to_dict(cfg: GenConfig) -> dict:
    """The resolved config as plain data under its YAML key names (for manifests)."""
    data = asdict(cfg)
    data["import"] = data.pop("import_")
    return data
