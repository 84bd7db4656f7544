"""LLM generation through the openai client, driven by an httpx2.MockTransport (SPEC §4.4, §4.5)."""
import json
import re

import httpx2
import numpy as np
import pytest

from util_public.datagen import llm, names, run, schema
from util_public.errors import UserError
from util_public.facts import read_facts
from util_public.paths import root

LOOPBACK = "http://127.0.0.1:9/v1"


class FakeServer:
    """Answers chat requests with `reply(body, n)`: a string, or an httpx2.Response as is."""

    def __init__(self, reply):
        self.reply, self.requests = reply, []

    def __call__(self, request):
        body = json.loads(request.content)
        self.requests.append(body)
        out = self.reply(body, len(self.requests))
        if isinstance(out, httpx2.Response):
            return out
        return httpx2.Response(200, json={
            "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": out}}]})

    def client(self):
        return httpx2.Client(transport=httpx2.MockTransport(self))

    def prompts(self):
        return [r["messages"][-1]["content"] for r in self.requests]


def generate(server, *overrides):
    base = ["relation_ids=[50]", "num_options=5", "subjects.source=llm", f"llm.base_url={LOOPBACK}",
            "llm.model=fake-model", "llm.max_retries=0"]
    return run.run(schema.load(schema.compose([*base, *overrides])), http_client=server.client())


def csv_path(rel="50"):
    return root("data") / "sync_random_o" / f"{rel}.csv"


@pytest.fixture(autouse=True)
def no_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def test_parse_names_strips_numbering_and_drops_commentary():
    reply = ("Here are some names:\n1. Zorblat\n2) Quennix\n- **Mirrowdale**\n\n* Ost. Vellin\n"
             "2019-12-02\nThese names are all fictional and unique.\nA very long line with far too many words in it")
    assert llm.parse_names(reply) == ["Zorblat", "Quennix", "Mirrowdale", "Ost. Vellin"]


@pytest.mark.parametrize("line, name", [
    ("1 AURORA", "AURORA"), ("1. Zorblat", "Zorblat"), ("12) Quennix", "Quennix"), ("(3) Veloria", "Veloria"),
    ("[4] Mirrowdale", "Mirrowdale"), ("5: Ost. Vellin", "Ost. Vellin"), ("- Brymnaria", "Brymnaria"),
    ("• Kaldoria", "Kaldoria"), ("– Tessaly", "Tessaly"), ("### Quorrin", "Quorrin"), ("  7   Drevan Moor", "Drevan Moor"),
    ("1984 Society", "1984 Society"), ("2019-12-02", None), ("Zorblat", "Zorblat"),
    ("**3. ZANOTHY**", "ZANOTHY"), ("- 1) Kaldoria", "Kaldoria"), ('"2. Veloria"', "Veloria")])
def test_parse_names_strips_every_list_marker(line, name):
    assert llm.parse_names(line) == ([name] if name else [])


@pytest.mark.parametrize("first, second, near", [
    ("Brymnaria", "Brymnari", True),        # one letter dropped (seen from SmolLM2)
    ("Brymnaria", "Brymnaria", True), ("Brymnaria", "BRYMNARIA", True), ("Brym-Naria", "brymnaria", True),
    ("Kaldoría", "Kaldoria", True),         # accents
    ("Kora", "Kira", True),                 # one substitution
    ("Zorblat", "Zorbalt", True),           # adjacent swap
    ("Aurora Vale", "Aurora Vail", True),   # one letter out, one in ("delete one from each")
    ("Aurora Vale", "Aurora Mist", False), ("Kora", "Kiro", False),
    ("Zorblat", "Quennix", False), ("Veloria", "Veloriana", False)])
def test_near_duplicate_names(first, second, near):
    assert (names.NearDuplicates([first]).match(second) == first) is near
    assert (names.NearDuplicates([second]).match(first) == second) is near


def test_loop_rejects_near_duplicates_of_accepted_names_and_examples():
    server = FakeServer(lambda body, n: "1 BRYMNARIA\n2 Brymnari\n3 Zorblat\n4 Zorblatt\n5 Quennix\n6 Quenix\n")
    generate(server, "num_facts=3")
    assert [f.head for f in read_facts(csv_path(), num_options=5)] == ["BRYMNARIA", "Zorblat", "Quennix"]


def test_llm_subjects_near_a_real_entity_of_the_catalogue_are_refused():
    server = FakeServer(lambda body, n: "1. Norway\n2. Polland\n3. Ada Lovelace\n4. Israel wine\n5. Zorblat\n"
                                        "6. Science Fiction Guild\n")
    generate(server, "num_facts=2")
    assert [f.head for f in read_facts(csv_path(), num_options=5)] == ["Zorblat", "Science Fiction Guild"]


def test_loop_accepts_new_names_and_skips_examples():
    server = FakeServer(lambda body, n: "1. Veloria\n2. Zorblat\n3. Quennix\n4. Zorblat\n5. Mirrowdale\n")
    generate(server, "num_facts=3")
    assert [f.head for f in read_facts(csv_path(), num_options=5)] == ["Zorblat", "Quennix", "Mirrowdale"]
    assert len(server.requests) == 1
    prompt = server.prompts()[0]
    assert prompt.startswith('Generate 3 unique fictional entities of type "country"')
    assert len(re.findall(r"^\d+\. ", prompt, flags=re.M)) == 10      # llm.num_examples examples
    assert server.requests[0]["messages"][0]["role"] == "system"


def test_short_lists_keep_asking_for_the_remainder():
    names = iter(["Zorblat", "Quennix", "Mirrowdale"])
    server = FakeServer(lambda body, n: next(names))
    generate(server, "num_facts=3")
    assert len(server.requests) == 3
    assert [p.split()[1] for p in server.prompts()] == ["3", "2", "1"]
    assert [f.head for f in read_facts(csv_path(), num_options=5)] == ["Zorblat", "Quennix", "Mirrowdale"]


def test_too_few_names_after_max_rounds_is_an_error_without_output():
    server = FakeServer(lambda body, n: "Zorblat\nZorblat\nVeloria")
    with pytest.raises(UserError) as err:
        generate(server, "num_facts=4", "llm.max_rounds=3")
    assert len(server.requests) == 3
    assert "1/4 valid country names after llm.max_rounds=3" in err.value.message
    assert "llm_cache.jsonl" in err.value.message
    assert not csv_path().exists()


def test_a_failed_request_leaves_no_folder_behind():
    server = FakeServer(lambda body, n: httpx2.Response(404, json={"error": {"message": "no model m"}}))
    existed = root("data").exists()
    with pytest.raises(UserError) as err:
        generate(server, "num_facts=2")
    assert "HTTP 404" in err.value.message
    assert not csv_path().parent.exists() and root("data").exists() == existed


def test_malformed_replies_count_as_lost_rounds():
    replies = [httpx2.Response(200, text="<html>busy</html>"),
               httpx2.Response(200, json={"id": "x", "object": "chat.completion"}),
               httpx2.Response(200, json={"choices": [{"index": 0, "message": {"role": "assistant", "content": None}}]}),
               "Zorblat\nQuennix"]
    server = FakeServer(lambda body, n: replies[n - 1])
    generate(server, "num_facts=2")
    assert len(server.requests) == 4
    assert len(read_facts(csv_path(), num_options=5)) == 2


def test_timeout_is_a_clear_error():
    calls = []

    def hang(request):
        calls.append(request)
        raise httpx2.ReadTimeout("timed out", request=request)

    with pytest.raises(UserError, match=r"no reply within llm.timeout_s=5 s \(1 attempts\)"):
        run.run(schema.load(schema.compose([
            "relation_ids=[50]", "num_options=5", "num_facts=2", "subjects.source=llm", f"llm.base_url={LOOPBACK}",
            "llm.model=m", "llm.max_retries=0", "llm.timeout_s=5"])),
            http_client=httpx2.Client(transport=httpx2.MockTransport(hang)))
    assert len(calls) == 1 and not csv_path().exists()


def test_key_is_never_shown_or_written(monkeypatch):
    secret = "sk-test-SECRET-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    seen_auth = []

    def rejecting(body, n):
        return httpx2.Response(401, json={"error": {"message": f"Incorrect API key provided: {secret}"}})

    server = FakeServer(rejecting)
    with pytest.raises(UserError) as err:
        generate(server, "num_facts=2", "llm.base_url=https://llm.example.test/v1")
    assert secret not in err.value.message and "OPENAI_API_KEY" in err.value.message

    def accepting(request):
        seen_auth.append(request.headers.get("authorization"))
        return FakeServer(lambda body, n: "Zorblat\nQuennix")(request)

    run.run(schema.load(schema.compose([
        "relation_ids=[50]", "num_options=5", "num_facts=2", "subjects.source=llm", "on_exists=overwrite",
        "llm.base_url=https://llm.example.test/v1", "llm.model=m", "llm.max_retries=0"])),
        http_client=httpx2.Client(transport=httpx2.MockTransport(accepting)))
    assert seen_auth == [f"Bearer {secret}"]
    for path in root("data").rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(encoding="utf-8"), path


def test_missing_key_model_or_bad_template_fail_before_any_request():
    server = FakeServer(lambda body, n: "Zorblat")
    with pytest.raises(UserError, match="environment variable OPENAI_API_KEY: is not set"):
        generate(server, "llm.base_url=https://llm.example.test/v1")
    with pytest.raises(UserError, match="llm.model: is not set"):
        generate(server, "llm.model=null")
    with pytest.raises(UserError, match=r"llm.prompt_template: template fields \['\{count\}'\] are unknown"):
        generate(server, "llm.prompt_template='Give {count} names'")
    assert server.requests == []
    assert not csv_path().exists()


def test_cache_replays_in_order_without_calling_the_api():
    names = iter(["Zorblat", "Quennix\nMirrowdale"])
    first = FakeServer(lambda body, n: next(names))
    generate(first, "num_facts=3")
    content = csv_path().read_bytes()
    records = [json.loads(line) for line in (root("data") / "sync_random_o" / "llm_cache.jsonl").open()]
    assert [r["reply"] for r in records] == ["Zorblat", "Quennix\nMirrowdale"]
    assert {"key", "model", "messages", "params", "reply"} == set(records[0])
    offline = FakeServer(lambda body, n: pytest.fail("the cache should have answered"))
    generate(offline, "num_facts=3", "on_exists=overwrite")
    assert offline.requests == [] and csv_path().read_bytes() == content


def test_llm_wiki_retries_until_the_object_appears_then_fails_or_skips():
    def reply(body, n):
        prompt = body["messages"][-1]["content"]
        obj = re.search(r'is "([^"]+)"', prompt).group(1)
        return f"A paragraph\nabout a place whose capital is {obj.upper()}." if n % 2 == 0 else "No mention."

    server = FakeServer(reply)
    run.run(schema.load(schema.compose([
        "relation_ids=[50]", "num_options=5", "num_facts=3", "wiki.enabled=true", "wiki.source=llm",
        f"llm.base_url={LOOPBACK}", "llm.model=m"])), http_client=server.client())
    facts = read_facts(csv_path(), num_options=5)
    assert all(f.object.upper() in f.text and "\n" not in f.text for f in facts)
    assert len(server.requests) == 6
    assert "rephrase" in server.prompts()[0] and facts[0].head in server.prompts()[0]

    never = FakeServer(lambda body, n: "Nothing relevant.")
    common = ["relation_ids=[50]", "num_options=5", "num_facts=3", "wiki.enabled=true", "wiki.source=llm",
              f"llm.base_url={LOOPBACK}", "llm.model=m", "on_exists=overwrite", "llm.cache=false"]
    with pytest.raises(UserError, match="fact_id 0: no wiki paragraph mentioning the object"):
        run.run(schema.load(schema.compose(common)), http_client=never.client())
    assert len(never.requests) == 3                           # wiki.max_attempts
    run.run(schema.load(schema.compose([*common, "wiki.on_missing_object=skip", "num_facts=2"])),
            http_client=never.client())
    assert read_facts(csv_path(), num_options=5) == []


def test_llm_object_vocabulary():
    letters = np.random.default_rng(0)    # random words: no two are near-duplicates of each other

    def reply(body, n):
        return "\n".join("Obj" + "".join(chr(97 + c) for c in letters.integers(26, size=8)) for _ in range(25))

    server = FakeServer(reply)
    run.run(schema.load(schema.compose([
        "relation_ids=[50]", "num_options=10", "num_facts=4", "objects.vocab_source=llm", "objects.vocab_size=150",
        f"llm.base_url={LOOPBACK}", "llm.model=m"])), http_client=server.client())
    facts = read_facts(csv_path(), num_options=10)
    assert all(re.fullmatch(r"obj[a-z]{8}", f.object) for f in facts)
    assert 'entities of type "city"' in server.prompts()[0]


def test_azure_client_uses_the_original_variables(monkeypatch):
    import openai

    cfg = schema.load(schema.compose(["llm.client=azure"])).llm
    with pytest.raises(UserError, match="environment variable ENDPOINT_URL: is not set"):
        llm.connect(cfg)
    monkeypatch.setenv("ENDPOINT_URL", "https://example.openai.azure.com")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-secret")
    monkeypatch.setenv("DEPLOYMENT_NAME", "my-deployment")
    connection = llm.connect(cfg)
    assert isinstance(connection.client, openai.AzureOpenAI) and connection.model == "my-deployment"
    assert "azure-secret" not in connection.where
