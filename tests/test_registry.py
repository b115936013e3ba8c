"""The registry: lookups, validated overrides, variants, entry-point plugins, and `fipo-bench algos`."""

import dataclasses
import sys
import textwrap

import pytest
import typer
from typer.testing import CliRunner

from fipo_bench import registry
from fipo_bench.algorithms import DAPO, FIPO, GRPO, get_algorithm, list_algorithms, register_algorithm
from fipo_bench.commands import algos


@pytest.fixture
def scratch_registry(monkeypatch):
    """A copy of the registry that the test may change; the real one is restored afterwards."""
    registry._discover()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return registry


def test_builtins_are_registered_with_published_defaults():
    assert {"grpo", "dapo", "fipo", "fipo-7b"} <= set(list_algorithms())
    grpo, dapo, fipo = get_algorithm("grpo"), get_algorithm("dapo"), get_algorithm("fipo")
    assert (type(grpo), type(dapo), type(fipo)) == (GRPO, DAPO, FIPO)
    assert (grpo.name, dapo.name, fipo.name) == ("grpo", "dapo", "fipo")
    assert (grpo.clip_low, grpo.clip_high, grpo.dual_clip, grpo.kl_coef, grpo.loss_agg) == (
        0.2,
        0.2,
        None,
        0.04,
        "seq-mean-token-mean",
    )
    assert grpo.needs_reference and not grpo.dynamic_sampling
    assert (dapo.clip_high, dapo.dual_clip, dapo.kl_coef, dapo.loss_agg, dapo.overlong_buffer) == (
        0.28,
        10.0,
        0.0,
        "token-mean",
        4096,
    )
    assert dapo.dynamic_sampling and not dapo.needs_reference
    assert (fipo.half_life, fipo.weight_low, fipo.weight_high, fipo.safety_threshold) == (
        32.0,
        1.0,
        1.2,
        10.0,
    )
    assert fipo.max_dual_clipped_tokens == 1 and not fipo.mask_negative_only and not fipo.safety_resets_weight


def test_fipo_7b_variant_is_fipo_with_the_7b_settings():
    variant = get_algorithm("fipo-7b")
    assert isinstance(variant, FIPO) and variant.name == "fipo-7b"
    expected = dataclasses.replace(
        get_algorithm("fipo"), weight_low=0.8, safety_threshold=3.0
    ).hyperparameters()
    assert variant.hyperparameters() == expected
    assert get_algorithm("fipo-7b", half_life=16).half_life == 16.0
    # Field documentation survives into the variant (`fipo-bench algos fipo-7b` shows it).
    docs = {f.name: (f.metadata["meaning"], f.metadata["source"]) for f in dataclasses.fields(variant)}
    assert docs == {f.name: (f.metadata["meaning"], f.metadata["source"]) for f in dataclasses.fields(FIPO)}


def test_unknown_name_lists_known_ones_and_suggests_close_ones():
    with pytest.raises(
        KeyError,
        match=r"unknown algorithm 'fpio'\. Did you mean 'fipo'.*Known algorithms: .*dapo, dr-grpo, fipo",
    ):
        get_algorithm("fpio")
    assert get_algorithm(" FIPO ").name == "fipo"


def test_overrides_are_validated_against_the_dataclass():
    fipo = get_algorithm("fipo", half_life=16, weight_high=1.5, dual_clip=None, max_dual_clipped_tokens=None)
    assert fipo.half_life == 16.0 and isinstance(fipo.half_life, float)  # ints accepted for floats
    assert fipo.dual_clip is None and fipo.max_dual_clipped_tokens is None
    with pytest.raises(ValueError, match=r"unknown hyperparameter 'half'\. Did you mean 'half_life'\?"):
        get_algorithm("fipo", half=16)
    with pytest.raises(TypeError, match=r"hyperparameter 'half_life' expects a number, got str '16'"):
        get_algorithm("fipo", half_life="16")
    with pytest.raises(TypeError, match="hyperparameter 'clip_low' expects a number, got bool"):
        get_algorithm("dapo", clip_low=True)
    with pytest.raises(TypeError, match="hyperparameter 'dynamic_sampling' expects true or false, got int"):
        get_algorithm("dapo", dynamic_sampling=1)
    with pytest.raises(TypeError, match="'overlong_buffer' expects an integer or null, got float"):
        get_algorithm("dapo", overlong_buffer=4096.0)
    with pytest.raises(ValueError, match="unknown hyperparameter 'half_life'"):
        get_algorithm("dapo", half_life=16)  # a FIPO field is not a DAPO field
    # Values are checked too, naming the field.
    with pytest.raises(ValueError, match="FIPO.weight_low/weight_high"):
        get_algorithm("fipo", weight_low=1.5)
    with pytest.raises(ValueError, match="GRPO.loss_agg: expected one of token-mean"):
        get_algorithm("grpo", loss_agg="mean")
    with pytest.raises(ValueError, match="DAPO.dual_clip"):
        get_algorithm("dapo", dual_clip=1.1)


def test_setting_changes_a_default_and_its_source_but_not_the_meaning():
    from fipo_bench.algorithms.base import setting
    from fipo_bench.algorithms.grpo import PolicyGradient

    def docs(cls):
        fields = dataclasses.fields(cls)
        return {f.name: (f.default, f.metadata["meaning"], f.metadata["source"]) for f in fields}

    frame, grpo, dapo = docs(PolicyGradient), docs(GRPO), docs(DAPO)
    assert grpo["kl_coef"] == (0.04, frame["kl_coef"][1], "DeepSeekMath section 4.1: beta = 0.04.")
    assert dapo["clip_high"] == (0.28, grpo["clip_high"][1], "DAPO section 3.1 (clip-higher): 0.28.")
    assert frame["kl_coef"][1].startswith("Weight of the k3 KL-to-reference term")
    # The declaring style of before: "Meaning. Source." in one string.
    meaning = "Upper bound of the influence weight exp(Future-KL)."
    assert docs(FIPO)["weight_high"] == (1.2, meaning, "FIPO: 1.2.")

    @dataclasses.dataclass(frozen=True)
    class Louder(DAPO):  # a subclass of a subclass: the meaning comes from the nearest declaration
        kl_coef: float = setting(0.5, "Test only.")

    assert docs(Louder)["kl_coef"] == (0.5, frame["kl_coef"][1], "Test only.") and Louder().kl_coef == 0.5
    with pytest.raises(TypeError, match=r"Misspelt.kl_coeff: .* no base class declares 'kl_coeff'"):
        @dataclasses.dataclass(frozen=True)
        class Misspelt(GRPO):
            kl_coeff: float = setting(0.5, "Test only.")


def test_a_renamed_hyperparameter_still_works_under_its_old_name_with_a_warning():
    with pytest.warns(FutureWarning, match="'decay_rate' is now called 'half_life'"):
        assert get_algorithm("fipo-7b", decay_rate=16).half_life == 16.0
    with pytest.warns(FutureWarning), pytest.raises(ValueError, match="'half_life' is given twice"):
        get_algorithm("fipo", half_life=8, decay_rate=16)
    with pytest.raises(ValueError, match="unknown hyperparameter 'decay_rate'"):
        get_algorithm("dapo", decay_rate=16)  # the rename is FIPO's


def test_register_algorithm_rules(scratch_registry):
    @register_algorithm("scratch")
    @dataclasses.dataclass(frozen=True)
    class Scratch(GRPO):
        pass

    assert "scratch" in list_algorithms() and get_algorithm("scratch").name == "scratch"
    with pytest.raises(ValueError, match="'grpo' is already registered by fipo_bench.algorithms.grpo.GRPO"):
        register_algorithm("grpo")(Scratch)
    with pytest.raises(ValueError, match="already registered as 'scratch'; use register_variant"):
        register_algorithm("scratch-2")(Scratch)
    with pytest.raises(TypeError, match="must be a frozen dataclass"):
        register_algorithm("mutable")(dataclasses.dataclass(type("Mutable", (), {})))
    with pytest.raises(ValueError, match="lower-case"):
        register_algorithm("Upper")


def test_entry_point_plugins_appear_by_themselves(scratch_registry, monkeypatch, tmp_path):
    (tmp_path / "fake_fipo_plugin.py").write_text(
        textwrap.dedent('''
        import dataclasses
        from fipo_bench.algorithms import GRPO, hyperparameter, register_algorithm

        @register_algorithm("fake-decorated")
        @dataclasses.dataclass(frozen=True)
        class FakeDecorated(GRPO):
            """A plugin algorithm that registers itself on import."""
            temperature: float = hyperparameter(2.0, "A made-up knob. Test only.")

        @dataclasses.dataclass(frozen=True)
        class FakePlain(GRPO):
            """A plugin algorithm registered under its entry point's name."""
    ''')
    )
    dist_info = tmp_path / "fake_fipo_plugin-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-fipo-plugin\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(
        "[fipo_bench.algorithms]\n"
        "fake-module = fake_fipo_plugin\n"
        "fake-plain = fake_fipo_plugin:FakePlain\n"
        "fake-broken = fake_fipo_plugin_does_not_exist\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_discovered", False)
    try:
        with pytest.warns(UserWarning, match="could not load algorithm plugin 'fake-broken'"):
            names = list_algorithms()
        assert {"fake-decorated", "fake-plain", "grpo", "fipo"} <= set(names)
        assert get_algorithm("fake-decorated", temperature=3).temperature == 3.0
        assert get_algorithm("fake-plain").name == "fake-plain"
    finally:
        sys.modules.pop("fake_fipo_plugin", None)


def _run_algos_command(*args):
    app = typer.Typer()
    app.command()(algos.algos)
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "220"})


def test_algos_command_shows_every_hyperparameter_default_and_meaning():
    result = _run_algos_command("fipo")
    assert result.exit_code == 0, result.output
    for field in dataclasses.fields(FIPO):
        assert field.name in result.output
    assert "32.0" in result.output and "Half-life tau of the Future-KL discount" in result.output
    everything = _run_algos_command()
    assert everything.exit_code == 0
    assert all(name in everything.output for name in list_algorithms())
    for cls in map(registry.algorithm_class, list_algorithms()):  # every built-in with its paper
        if cls.__module__.startswith("fipo_bench."):
            assert cls.paper and cls.paper.split("arXiv ")[-1] in everything.output


def test_algos_overview_marks_the_algorithms_that_train_a_critic():
    from fipo_bench.commands.algos import overview_table

    classes = {name: registry.algorithm_class(name) for name in list_algorithms()}
    table = overview_table(classes)
    names, critic = (list(column.cells) for column in (table.columns[0], table.columns[2]))
    assert table.columns[2].header == "critic"
    assert {n for n, c in zip(names, critic, strict=True) if c == "yes"} == {"ppo", "vc-ppo", "vapo"}
    output = _run_algos_command().output
    assert "2503.24290" in output and "2503.01491" in output and "2504.05118" in output


def test_algos_command_unknown_name_is_a_usage_error():
    result = _run_algos_command("fpo")
    assert result.exit_code == 2
    assert "Known algorithms" in result.output
