"""The recipe loader: strict keys, all errors at once, dotted paths, did-you-mean, overrides, hash."""

from pathlib import Path

import pytest
import yaml

from finetune.config.load import RecipeError, load_recipe, recipe_from_dict, recipe_hash

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
BASE = {"name": "t", "model": {"core": {"layers": 2, "width": 32, "heads": 4}}, "pretrain": {}}


def test_every_shipped_recipe_validates_and_starts_with_its_command():
    files = sorted(RECIPES.rglob("*.yaml"))  # recursive: nested folders count too
    assert len(files) >= 3
    for path in files:
        load_recipe(path)
        first = path.read_text().splitlines()[0]
        assert first.startswith(("# ft run ", "# ft scale ")) and str(path.relative_to(RECIPES.parent)) in first, path


def test_misspelled_key_names_path_and_suggestion():
    with pytest.raises(RecipeError) as exc:
        recipe_from_dict({**BASE, "train": {"learnig_rate": 1e-3}})
    assert exc.value.errors == ["train.learnig_rate: unknown key; did you mean train.learning_rate?"]


def test_all_errors_reported_at_once():
    bad = {**BASE, "train": {"batch_size": "many", "epoks": 1}, "model": {"core": {"layers": 0, "width": 32}}}
    with pytest.raises(RecipeError) as exc:
        recipe_from_dict(bad)
    text = "\n".join(exc.value.errors)
    assert "train.batch_size" in text and "train.epoks: unknown key; did you mean train.epochs?" in text
    assert "model.core.layers" in text
    assert len(exc.value.errors) == 3


def test_overrides_are_validated_like_the_file():
    r = recipe_from_dict(BASE, ["train.learning_rate=1e-4", "model.core.layers=3", "pretrain.train.max_steps=5"])
    assert r.train.learning_rate == 1e-4 and r.model.core.layers == 3 and r.pretrain.train.max_steps == 5
    with pytest.raises(RecipeError) as exc:
        recipe_from_dict(BASE, ["train.learnin_rate=1"])
    assert "train.learnin_rate: unknown key; did you mean train.learning_rate?" in exc.value.errors
    with pytest.raises(RecipeError, match="expected key=value"):
        recipe_from_dict(BASE, ["train.learning_rate"])


def test_contradictions_are_errors():
    with pytest.raises(RecipeError, match="give model.path"):
        recipe_from_dict({"name": "t", "model": {}})
    for freeze, why in (
        ({"embeddings": True}, "freeze.embeddings applies to kind: full"),
        ({"train_top_blocks": 0}, "nowhere"),
    ):
        with pytest.raises(RecipeError, match=why):
            recipe_from_dict(
                {
                    "name": "t",
                    "model": {"path": "x"},
                    "data": {"scenario": "tutoring"},
                    "method": {"kind": "lora", "freeze": freeze},
                }
            )
    with pytest.raises(RecipeError, match="rpo_alpha applies to objective: dpo, not orpo"):
        recipe_from_dict(
            {
                "name": "t",
                "model": {"path": "x"},
                "data": {"shape": "preference", "scenario": "tutoring"},
                "method": {"objective": "orpo", "rpo_alpha": 1.0},
            }
        )
    with pytest.raises(RecipeError, match="not divisible"):
        recipe_from_dict({**BASE, "model": {"core": {"width": 30, "heads": 4}}})


def test_scenario_shorthand_and_hash_stability(tmp_path):
    r = recipe_from_dict(
        {"name": "t", "model": {"path": "m"}, "data": {"scenario": "tutoring"}, "method": {"kind": "lora"}}
    )
    assert r.data.sources[0].scenario == "tutoring"
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    a.write_text(yaml.safe_dump({"name": "x", "seed": 1, "model": {"path": "m"}}))
    b.write_text("model: {path: m}\nseed: 1\nname: x\n")
    assert recipe_hash(load_recipe(a)) == recipe_hash(load_recipe(b))
    assert recipe_hash(load_recipe(a, ["seed=2"])) != recipe_hash(load_recipe(a))


def test_yaml_is_safe_loaded(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("name: !!python/object/apply:os.system ['echo hacked']\nmodel: {path: m}\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(p)


def test_max_length_must_fit_the_model_the_recipe_pretrains():
    tuned = {**BASE, "data": {"scenario": "tutoring", "max_length": 512}, "method": {"kind": "lora"}}
    with pytest.raises(
        RecipeError, match="data.max_length 512 exceeds the context of the model this recipe pretrains \\(256\\)"
    ):
        recipe_from_dict(tuned)
    recipe_from_dict(tuned, ["model.core.context_length=512"])
    recipe_from_dict(tuned, ["pretrain.block_size=512"])  # the pretrained context is the larger of the two


def test_duplicate_yaml_key_is_an_error_naming_key_and_lines(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(
        "name: t\nmodel: {path: m}\ntrain:\n  learning_rate: 1.0e-4\ndata: {scenario: tutoring}\n"
        "method: {kind: lora}\ntrain:\n  learning_rate: 5.0\n"
    )
    with pytest.raises(RecipeError) as exc:
        load_recipe(path)
    assert exc.value.errors == ["line 7: key 'train' appears twice (first on line 3); keep one of them"]
    nested = tmp_path / "nested.yaml"
    nested.write_text("name: t\nmodel: {path: m, path: n}\n")
    with pytest.raises(RecipeError, match="line 2: key 'path' appears twice"):
        load_recipe(nested)


def test_yaml_merge_keys_still_override_without_error(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text(
        "name: t\nmodel: {core: {layers: 2, width: 32, heads: 4}}\npretrain:\n"
        "  train: &t {max_steps: 5, learning_rate: 1.0e-3}\ntrain:\n  <<: *t\n  learning_rate: 2.0e-3\n"
    )
    r = load_recipe(path)
    assert r.train.learning_rate == 2e-3 and r.train.max_steps == 5


@pytest.mark.parametrize(
    "where, key, hint",
    [
        ((), "test", "eval.data"),
        ((), "eval_data", "eval.data"),
        (("eval",), "test_data", "eval.data"),
        (("train",), "lr", "train.learning_rate"),
        (("method",), "rank", "method.r"),
        (("data",), "max_seq_length", "data.max_length"),
    ],
)
def test_guessed_keys_get_a_hint_where_spelling_cannot_find_one(where, key, hint):
    data = {
        "name": "t",
        "model": {"path": "m"},
        "data": {"scenario": "tutoring"},
        "method": {"kind": "lora"},
        "eval": {},
        "train": {},
    }
    node = data
    for part in where:
        node = node[part]
    node[key] = 1
    with pytest.raises(RecipeError) as exc:
        recipe_from_dict(data)
    assert exc.value.errors == [".".join((*where, key)) + f": unknown key; did you mean {hint}?"]


def test_every_guessed_key_hint_names_a_real_key():
    from finetune.config.load import GUESSED_KEYS, _model_at
    from finetune.config.schema import Recipe

    for guess, target in GUESSED_KEYS.items():
        *parents, last = target.split(".")
        model = _model_at(Recipe, parents)
        assert model is not None and last in model.model_fields, (guess, target)


@pytest.mark.parametrize(
    "source, expected",
    [
        (
            {"path": "a.csv", "split": "bogus"},
            "data.sources.0: split 'bogus' is not one of all, train, validation, test",
        ),
        ({"path": "a.csv", "format": "zzz"}, "data.sources.0: format 'zzz' is not one of jsonl, json, csv, parquet"),
        (
            {"path": "a.txt", "format": "gsm8k"},
            "data.sources.0: format 'gsm8k' is read by scenario tutoring; add scenario: tutoring to this source",
        ),
        (
            {"path": "a.txt", "scenario": "tutoring", "format": "e2e"},
            "data.sources.0: format 'e2e' is not one of jsonl, json, csv, parquet, gsm8k",
        ),
        ({"scenario": "tutoring", "split": "test"}, "data.sources.0: split and format apply to a file (path)"),
    ],
)
def test_source_split_and_format_are_checked_by_validate(source, expected):
    data = {"name": "t", "model": {"path": "m"}, "data": {"sources": [source]}, "method": {"kind": "lora"}}
    with pytest.raises(RecipeError) as exc:
        recipe_from_dict(data)
    assert len(exc.value.errors) == 1 and exc.value.errors[0].startswith(expected), exc.value.errors


def test_source_split_and_format_that_fit():
    from finetune.config.schema import SourceSpec

    assert SourceSpec(path="german.data", scenario="risk_assessment", format="german_credit").split is None
    assert SourceSpec(path="a.CSV", format=".CSV", split="test").split == "test"
    assert SourceSpec(path="org/name", split="train[:10%]").split == "train[:10%]"  # a hub split stays free


# ---------------------------------------------------------------- pretrain.train has its own type (issue 13, point 4)
GOLDEN = Path(__file__).resolve().parent / "golden" / "recipe_before_pretrain_train_spec.yaml"
RUN_LEVEL = ["precision", "log_with", "gradient_checkpointing"]


@pytest.mark.parametrize(
    "key,value", [("precision", "fp32"), ("log_with", ["tensorboard"]), ("gradient_checkpointing", True)]
)
def test_pretrain_train_refuses_the_run_level_keys_and_says_where_they_go(key, value):
    """They validated and did nothing: the run's one accelerator takes them from the top-level train section."""
    with pytest.raises(RecipeError) as exc:
        recipe_from_dict({**BASE, "pretrain": {"train": {key: value}}})
    [error] = exc.value.errors
    assert error.startswith(f"pretrain.train.{key}: unknown key; did you mean train.{key} (")
    assert recipe_from_dict({**BASE, "train": {key: value}}).train.model_dump()[key] == value  # the place that works


def test_a_misspelled_run_level_key_under_pretrain_train_also_says_where_it_goes():
    with pytest.raises(RecipeError) as exc:
        recipe_from_dict({**BASE, "pretrain": {"train": {"precison": "fp32"}}})
    assert exc.value.errors[0].startswith("pretrain.train.precison: unknown key; did you mean train.precision (")


def test_pretrain_train_keeps_the_loop_fields_and_threads():
    r = recipe_from_dict({**BASE, "pretrain": {"train": {"max_steps": 7, "threads": 2, "eval_every": 3}}})
    assert (r.pretrain.train.max_steps, r.pretrain.train.threads, r.pretrain.train.eval_every) == (7, 2, 3)
    assert not set(RUN_LEVEL) & set(r.pretrain.train.model_dump())


def _golden_as_a_recipe_now() -> dict:
    """The old run's recipe as its user writes it today: the same, less the keys that never did anything."""
    data = yaml.safe_load(GOLDEN.read_text())
    for key in RUN_LEVEL:
        del data["pretrain"]["train"][key]
    return data


def test_a_recipe_written_before_keeps_its_hash():
    import hashlib
    import json

    old = yaml.safe_load(GOLDEN.read_text())
    old_hash = hashlib.sha256(json.dumps(old, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
    assert recipe_hash(recipe_from_dict(_golden_as_a_recipe_now())) == old_hash


def test_a_run_written_before_still_resumes(tmp_path):
    """check_resumable compares the run folder's recipe.yaml (with the old keys) with today's dump (without)."""
    from finetune.rundir import check_resumable

    (tmp_path / "recipe.yaml").write_text(GOLDEN.read_text())
    now = recipe_from_dict(_golden_as_a_recipe_now())
    check_resumable(now, tmp_path)  # no error
    with pytest.raises(Exception, match="pretrain.train.max_steps: 20 -> 21"):  # a real change is still refused
        check_resumable(
            now.model_copy(
                update={
                    "pretrain": now.pretrain.model_copy(
                        update={"train": now.pretrain.train.model_copy(update={"max_steps": 21})}
                    )
                }
            ),
            tmp_path,
        )


def test_a_pretraining_written_before_keeps_its_checkpoint_fingerprint():
    """The pretrain checkpoint fingerprint and cache key hash the section's settings, old keys included."""
    from finetune.config.load import section_hash
    from finetune.stages.pretrain import NOT_RESULT_FIELDS, result_settings

    old = yaml.safe_load(GOLDEN.read_text())["pretrain"]
    old.pop("cache")
    old["train"] = {k: v for k, v in old["train"].items() if k not in NOT_RESULT_FIELDS["train"]}
    now = recipe_from_dict(_golden_as_a_recipe_now()).pretrain
    assert section_hash(result_settings(now)) == section_hash(old)


def test_a_dumped_recipe_loads_again(tmp_path):
    """runs/<name>/recipe.yaml is a recipe: `ft run` on it must not meet keys the loader refuses."""
    from finetune.config.load import dump_recipe

    r = recipe_from_dict(_golden_as_a_recipe_now())
    dump_recipe(r, tmp_path / "r.yaml")
    assert load_recipe(tmp_path / "r.yaml") == r
