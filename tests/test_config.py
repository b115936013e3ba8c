"""RunConfig: validation names the field, JSON round trip, layering of preset/file/options/--set."""

import json

import pytest

from fipo_bench.config import ConfigError, RunConfig, apply_sets, build_config
from fipo_bench.presets import BUILTIN_PRESET, MODEL_PRESET, PRESETS


def test_json_round_trip_is_identity():
    cfg = build_config("tiny", sets=["fipo.half_life=16", "tiny_recipe.steps=5", "seeds=[0,2]"])
    again = RunConfig.from_json(cfg.to_json())
    assert again == cfg
    assert isinstance(again.seeds, tuple) and again.seeds == (0, 2)
    assert again.algo_overrides["fipo"]["half_life"] == 16


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"mini_batch_size": 3}, "mini_batch_size"),  # 16 prompts do not split into mini-batches of 3
        ({"lr": -1.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"num_steps": 0}, "num_steps"),
        ({"num_steps": 2.5}, "num_steps"),
        ({"samples_per_prompt": 1}, "samples_per_prompt"),
        ({"top_p": 0.0}, "top_p"),
        ({"temperature": 0.0}, "temperature"),
        ({"backend": "slurm"}, "backend"),
        ({"device": "tpu"}, "device"),
        ({"algos": ()}, "algos"),
        ({"algos": ("dapo", "dapo")}, "algos"),
        ({"seeds": (0, -1)}, "seeds"),
        ({"run_name": "a/b"}, "run_name"),
        ({"algo_overrides": {"ppo": {"x": 1}}}, "algo_overrides"),
        ({"model": "Qwen/Qwen2.5-0.5B"}, "dataset"),  # a real model needs a dataset
        ({"dataset": "train.jsonl"}, "dataset"),  # the built-in model would ignore it
        ({"model": "m", "dataset": "d.jsonl", "eval_datasets": ["aime24", "tiny"]}, "eval_datasets"),
        ({"recompute_old_logp": "yes"}, "recompute_old_logp"),
    ],
)
def test_validation_error_names_the_field(changes, field):
    base = build_config("tiny").to_dict()
    base.update({k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()})
    with pytest.raises(ConfigError, match=f"'{field}'"):
        RunConfig.from_dict(base)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("num_steps", "5", "an integer"),
        ("lr", True, "a number"),  # a bool is no number
        ("seeds", ["0", 1], "a list of integers"),
        ("algos", "grpo", None),  # a comma-separated string is a list: accepted
        ("model", 3, "a string or null"),
        ("tiny_task", [1], "an object"),
    ],
)
def test_a_value_of_the_wrong_type_names_the_file_the_field_and_the_type(tmp_path, field, value, expected):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({field: value}))
    if expected is None:
        assert build_config("tiny", config_file=path).algos == ("grpo",)
        return
    with pytest.raises(ConfigError, match=rf"run\.json: field '{field}': expected {expected}, got"):
        build_config("tiny", config_file=path)


def test_a_renamed_hyperparameter_in_set_reaches_the_algorithm_under_its_new_name():
    from fipo_bench.algorithms import get_algorithm

    cfg = build_config("tiny", sets=["fipo.decay_rate=16"])  # the spelling before the rename
    with pytest.warns(FutureWarning, match="'decay_rate' is now called 'half_life'"):
        assert get_algorithm("fipo", **cfg.algo_overrides["fipo"]).half_life == 16.0


def test_a_config_built_directly_holds_tuples_not_lists():
    with pytest.raises(ConfigError, match="'algos': expected a list of strings, got"):
        RunConfig(algos=["grpo"])
    assert RunConfig(lr=1).lr == 1  # an int is a number


def test_unknown_field_in_config_file_names_file_and_field(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"num_steps": 3, "learning_rate": 1e-4}))
    with pytest.raises(ConfigError, match=r"run\.json.*learning_rate"):
        build_config("tiny", config_file=path)


def test_layers_preset_file_options_sets(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"num_steps": 3, "lr": 2e-4, "eval_k": 2}))
    cfg = build_config("tiny", config_file=path, options={"num_steps": 5, "seeds": "1,2"}, sets=["lr=3e-4"])
    assert cfg.eval_k == 2  # from the file
    assert cfg.num_steps == 5  # options beat the file
    assert cfg.lr == 3e-4  # --set beats everything
    assert cfg.seeds == (1, 2)
    assert cfg.rollout_batch_size == PRESETS["tiny"]["rollout_batch_size"]  # from the preset


def test_set_routes_dotted_keys():
    values = apply_sets({"algos": ["fipo"]}, ["fipo.half_life=16", "tiny_task.max_terms=4", "eval_k=3",
                                              "dtype=bfloat16"])
    assert values["algo_overrides"] == {"fipo": {"half_life": 16}}
    assert values["tiny_task"] == {"max_terms": 4}
    assert values["eval_k"] == 3 and values["dtype"] == "bfloat16"  # JSON when it parses, else a string
    with pytest.raises(ConfigError, match="unknown config field 'learning_rate'"):
        apply_sets({}, ["learning_rate=1"])
    with pytest.raises(ConfigError, match="key=value"):
        apply_sets({}, ["lr"])


def test_preset_overrides_of_absent_algorithms_are_dropped_but_explicit_ones_are_errors():
    cfg = build_config("tiny", options={"algos": "grpo"})
    assert cfg.algo_overrides == {}  # the preset's dapo/fipo overrides do not apply
    with pytest.raises(ConfigError, match="algo_overrides"):
        build_config("tiny", options={"algos": "grpo"}, sets=["fipo.half_life=16"])


def test_default_run_name_is_deterministic_and_tracks_the_config():
    a = build_config("tiny", options={"algos": "grpo,dapo"})
    b = build_config("tiny", options={"algos": "grpo,dapo"})
    c = build_config("tiny", options={"algos": "grpo,dapo"}, sets=["lr=3e-4"])
    assert a.default_run_name() == b.default_run_name()
    assert a.default_run_name() != c.default_run_name()
    # Where results go does not change which run it is.
    assert a.replace(output_dir="elsewhere").default_run_name() == a.default_run_name()


def test_published_presets_carry_the_published_recipe():
    # DESIGN.md "Presets": 512 prompts x 16, mini-batch 32 (DAPO), lr 1e-6 with 10 warm-up steps, weight
    # decay 0.1, clip 1.0, max response 20480, overlong buffer 4096, temperature 1, top-p 1.
    for name in ("qwen2.5-7b-math", "qwen2.5-32b-dapo"):
        cfg = build_config(name)
        assert (cfg.rollout_batch_size, cfg.samples_per_prompt, cfg.mini_batch_size) == (512, 16, 32)
        assert (cfg.lr, cfg.warmup_steps, cfg.weight_decay, cfg.grad_clip) == (1e-6, 10, 0.1, 1.0)
        assert (cfg.max_response_length, cfg.temperature, cfg.top_p) == (20480, 1.0, 1.0)
        assert cfg.algo_overrides["dapo"]["overlong_buffer"] == 4096
    seven = build_config("qwen2.5-7b-math").algo_overrides["fipo"]
    assert (seven["weight_low"], seven["weight_high"], seven["safety_threshold"]) == (0.8, 1.2, 3.0)


def test_every_preset_builds_and_its_algorithm_overrides_are_valid():
    from fipo_bench.algorithms import get_algorithm

    for name in PRESETS:
        options = {"model": "org/model", "dataset": "d.jsonl"} if name == MODEL_PRESET else {}
        cfg = build_config(name, options=options)
        for algo in cfg.algos:
            get_algorithm(algo, **cfg.algo_overrides.get(algo, {}))


def test_a_model_of_ones_own_is_evaluated_on_aime24_unless_told_otherwise(tmp_path):
    cfg = build_config("tiny", options={"model": "org/model", "dataset": "d.jsonl"})
    assert cfg.eval_datasets == ("aime24",)
    assert build_config("tiny").eval_datasets == ("tiny",)  # the built-in model: its own task
    explicit = build_config("tiny", options={"model": "m", "dataset": "d"}, sets=["eval_datasets=math500"])
    assert explicit.eval_datasets == ("math500",)
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"model": "m", "dataset": "d", "eval_datasets": ["gsm8k"]}))
    assert build_config("tiny", config_file=path).eval_datasets == ("gsm8k",)
    # Asked for explicitly, "tiny" with a model is an error that says which flag to pass.
    with pytest.raises(ConfigError, match=r"'eval_datasets'.*--set eval_datasets=aime24"):
        build_config("tiny", options={"model": "m", "dataset": "d"}, sets=["eval_datasets=tiny"])


def test_a_model_without_a_preset_gets_the_real_model_preset(tmp_path):
    own = {"model": "org/model", "dataset": "d.jsonl"}
    cfg = build_config(options=own)
    assert cfg.preset == MODEL_PRESET != BUILTIN_PRESET and cfg.model == "org/model"
    # Not the built-in toy's limits (48 prompt tokens, 72 response tokens, lr 1e-4) ...
    tiny = build_config()
    assert tiny.preset == BUILTIN_PRESET
    assert cfg.max_prompt_length >= 16 * tiny.max_prompt_length
    assert cfg.max_response_length > tiny.max_response_length
    assert cfg.lr < tiny.lr and cfg.eval_datasets == ("aime24",) and cfg.dataset == "d.jsonl"
    # ... and the zoo's length-dependent settings follow this preset's response length.
    assert build_config(options={**own, "algos": "dr-grpo,dapo"}).algo_overrides == {
        "dr-grpo": {"max_tokens_norm": cfg.max_response_length}, "dapo": {"overlong_buffer": 256}}
    # A model named by --set or a config file counts too; an explicit preset wins.
    assert build_config(sets=["model=m", "dataset=d"]).preset == MODEL_PRESET
    path = tmp_path / "run.json"
    path.write_text(json.dumps(own))
    assert build_config(config_file=path).preset == MODEL_PRESET
    assert build_config(BUILTIN_PRESET, options=own).max_prompt_length == tiny.max_prompt_length
    with pytest.raises(ConfigError, match=r"small-model.*pass --model"):
        build_config(MODEL_PRESET)


def test_dataset_without_a_model_is_refused_not_ignored():
    with pytest.raises(ConfigError, match=r"'dataset': 'train.jsonl' needs a model.*pass --model"):
        build_config("tiny", options={"dataset": "train.jsonl"})


def test_tiny_presets_chain_default_sums_kept_and_study_over_seeds():
    from fipo_bench.tasks import tiny_recipe

    tiny, sums, study = build_config("tiny"), build_config("tiny-sums"), build_config("tiny-study")
    assert BUILTIN_PRESET == "tiny" and tiny.tiny_task["name"] == "chain"
    # Issue 20: >= 4 updates per rollout batch, so clipping and FIPO's weights act.
    assert tiny.rollout_batch_size // tiny.mini_batch_size >= 4
    # The sums preset trains the checkpoint it trained before tasks had names (the tests' cached models).
    assert tiny_recipe(sums).hash() == "6a61e728cdb02074"
    assert type(tiny_recipe(tiny).task).__name__ == "ChainTask"
    assert len(study.seeds) >= 6
    differ = {k for k, v in study.to_dict().items() if tiny.to_dict()[k] != v}
    assert differ == {"seeds", "preset"}


@pytest.mark.parametrize(("listed", "expected"), [
    ("rg:chain_sum?size=40,aime24", ("rg:chain_sum?size=40", "aime24")),  # a name after options: a new item
    ('["rg:basic_arithmetic?operators=+,-&min_terms=2", "aime24"]',
     ("rg:basic_arithmetic?operators=+,-&min_terms=2", "aime24")),  # JSON keeps the option list whole
    ("rg:basic_arithmetic?operators=+%2C-,aime24", ("rg:basic_arithmetic?operators=+%2C-", "aime24")),
    ("rg:basic_arithmetic?operators=+,-&min_terms=2", "'-&min_terms=2' reads as part of"),
    ("aime24,rg:basic_arithmetic?operators=+,*", "'\\*' reads as part of"),
])
def test_a_comma_inside_an_rg_option_list_is_not_taken_for_a_list_separator(listed, expected):
    options = {"model": "/m", "dataset": "rg:chain_sum"}
    if isinstance(expected, tuple):
        assert build_config(None, options=options, sets=[f"eval_datasets={listed}"]).eval_datasets == expected
    else:
        with pytest.raises(ConfigError, match=f"field 'eval_datasets': {expected}.*write the list as JSON"):
            build_config(None, options=options, sets=[f"eval_datasets={listed}"])
