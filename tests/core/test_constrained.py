"""Decoding under a JSON schema (rain_core.constrained) on the tiny random model: whatever the random weights prefer,
every row the backend decodes and every path the search commits is valid JSON for the schema, and closes."""

from __future__ import annotations

import json

import jsonschema
import pytest
import torch

from rain_core import RainConfig
from rain_core.model import ResponseGuard, RowSpec
from rain_core.constrained import ConstraintError, JsonSchemaConstraint, decoding_schema
from rain_core.exchange import format_prompt
from rain_core.search import RainSearch

SCHEMA = {"type": "object",
          "properties": {"city": {"type": "string", "maxLength": 12},
                         "unit": {"enum": ["celsius", "fahrenheit"]},
                         "days": {"type": "integer", "minimum": 1, "maximum": 7},
                         "flags": {"type": "array", "items": {"type": "boolean"}, "maxItems": 3}},
          "required": ["city", "unit", "days"]}


def _constraint(backend, schema=SCHEMA, **kwargs) -> JsonSchemaConstraint:
    return JsonSchemaConstraint(schema, backend.tokenizer, vocab_size=backend.model.get_output_embeddings().weight.shape[0],
                                **kwargs)


def test_every_sampled_row_is_a_closed_document_the_schema_accepts(tiny_backend):
    ids = tiny_backend.encode("Human: the weather?\nAssistant:")
    guard = ResponseGuard.build(len(ids), constraint=_constraint(tiny_backend))
    rows = [RowSpec("greedy", 150), RowSpec("top_k", 150, top_k=5)] + [RowSpec("full", 150)] * 6
    for rollout in tiny_backend.rollouts(ids, rows, torch.Generator().manual_seed(0), guard):
        assert rollout.finish == "eos", tiny_backend.decode(rollout.tokens)
        jsonschema.validate(json.loads(tiny_backend.decode(rollout.tokens[:-1])), SCHEMA)


def test_without_the_constraint_the_random_model_writes_no_json(tiny_backend):
    """The control: the same rows unconstrained are not JSON, so the test above measures the constraint."""
    ids = tiny_backend.encode("Human: the weather?\nAssistant:")
    for rollout in tiny_backend.rollouts(ids, [RowSpec("full", 40)] * 4, torch.Generator().manual_seed(0)):
        with pytest.raises(ValueError):
            json.loads(tiny_backend.decode(rollout.tokens))


def test_the_search_commits_only_valid_json(tiny_backend):
    """RAIN's candidates, simulations and one-token priors all run under the constraint: the committed response is
    a complete document, whatever the judge rewards."""
    prompt = format_prompt(tiny_backend.tokenizer, "What is the weather?")
    ids = tiny_backend.encode(prompt.text)
    judge = type("J", (), {"score": lambda self, ex: 1.0 if "fahrenheit" in ex.response else -0.5})()
    for seed in (0, 1):
        search = RainSearch(model=tiny_backend, evaluator=judge, embedder=None,
                            config=RainConfig(max_new_tokens=120, max_iterations=4, min_iterations=2, seed=seed),
                            prompt=prompt, prompt_ids=ids, generator=torch.Generator().manual_seed(seed),
                            constraint=_constraint(tiny_backend))
        text = "".join(search.run())
        assert search.result.finish_reason == "eos", text
        jsonschema.validate(json.loads(text), SCHEMA)


def test_a_prefix_in_the_prompt_is_where_the_grammar_starts(tiny_backend):
    prefix = '{"city": "'
    constraint = _constraint(tiny_backend, prefix=prefix)
    ids = tiny_backend.encode("Human: the weather?\nAssistant:" + prefix)
    guard = ResponseGuard.build(len(ids), constraint=constraint)
    for rollout in tiny_backend.rollouts(ids, [RowSpec("full", 150)] * 3, torch.Generator().manual_seed(2), guard):
        assert rollout.finish == "eos"
        jsonschema.validate(json.loads(prefix + tiny_backend.decode(rollout.tokens[:-1])), SCHEMA)


def test_forced_text_and_acceptance(tiny_backend):
    constraint = _constraint(tiny_backend)
    assert constraint.forced_text() == '{"city": "'
    assert constraint.accepts('{"city": "Oslo", "unit": "celsius", "days": 3}')
    assert not constraint.accepts('{"city": "Oslo", "unit": "kelvin", "days": 3}')
    assert not constraint.accepts('{"city": "Oslo", "unit": "celsius", "days": 3, "extra": 1}')  # no invented keys


def test_a_prefix_the_schema_refuses_is_an_error(tiny_backend):
    with pytest.raises(ConstraintError, match="does not start a document"):
        _constraint(tiny_backend, prefix='{"town": ')


def test_decoding_schema_bounds_what_the_schema_leaves_open():
    tight = decoding_schema({"type": "object", "properties": {
        "name": {"type": "string"}, "code": {"type": "string", "maxLength": 3}, "kind": {"type": "string", "enum": ["a"]},
        "items": {"type": "array", "items": {"type": "object", "properties": {"x": {"type": "string"}}}}}})
    assert tight["additionalProperties"] is False
    props = tight["properties"]
    assert props["name"]["maxLength"] == 64 and props["code"]["maxLength"] == 3 and "maxLength" not in props["kind"]
    assert props["items"]["maxItems"] == 8
    assert props["items"]["items"]["additionalProperties"] is False
    assert props["items"]["items"]["properties"]["x"]["maxLength"] == 64


def test_a_guard_with_soft_rules_never_leaves_a_row_without_a_token(tiny_backend):
    """No-repeat n-grams may ban the one token the grammar needs (a closing quote); the grammar wins."""
    ids = tiny_backend.encode("Human: hi\nAssistant:")
    constraint = _constraint(tiny_backend, schema={"type": "object", "properties": {"a": {"enum": ["xx xx xx"]}},
                                                    "required": ["a"]})
    guard = ResponseGuard.build(len(ids), no_repeat_ngram_size=1, constraint=constraint)
    (rollout,) = tiny_backend.rollouts(ids, [RowSpec("greedy", 60)], torch.Generator().manual_seed(0), guard)
    assert json.loads(tiny_backend.decode(rollout.tokens[:-1])) == {"a": "xx xx xx"}
