"""Dataset loading (the handmade files of tests/support/handmade_benchmarks.py, the real ones in
../shared/data, local files, the Hub path with a fake `datasets`), gold normalization and prompt templates."""

import json
import sys
import types

import pytest

from fipo_bench.evals import DATASETS, Problem, format_prompt, load_dataset, normalize_gold


def raw_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_aime24_offline(shared_data_dir):
    problems = load_dataset("aime24", shared_data_dir)
    raw = raw_rows(shared_data_dir / "aime24.jsonl")
    assert len(problems) == 30
    assert all(isinstance(p, Problem) for p in problems)
    assert [p.id for p in problems] == [str(r["id"]) for r in raw]
    assert [p.problem for p in problems] == [r["problem"] for r in raw]
    # The file stores 7 answers with leading zeros ("025"); the gold is the plain integer.
    assert sum(r["answer"].startswith("0") for r in raw) == 7
    assert [p.answer for p in problems] == [str(int(r["answer"])) for r in raw]
    assert "25" in [p.answer for p in problems] and "025" not in [p.answer for p in problems]


def test_other_datasets_offline(shared_data_dir):
    aime25 = load_dataset("aime25", shared_data_dir)
    assert len(aime25) == 30 and [p.id for p in aime25] == [str(i) for i in range(30)]
    amc = load_dataset("amc23", shared_data_dir)
    raw_amc = raw_rows(shared_data_dir / "amc23.jsonl")
    assert len(amc) == 40
    assert [p.answer for p in amc] == [str(int(r["answer"])) for r in raw_amc]  # 27.0 -> "27"
    assert amc[0].answer == "27"
    math500 = load_dataset("math500", shared_data_dir)
    assert len(math500) == 500 and math500[0].id == "test/precalculus/807.json"
    assert math500[0].answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    gsm8k = load_dataset("gsm8k", shared_data_dir)
    raw_gsm = raw_rows(shared_data_dir / "gsm8k_test.jsonl")
    assert len(gsm8k) == 1319
    assert gsm8k[0].answer == "18" and gsm8k[0].problem == raw_gsm[0]["question"]
    expected = [r["answer"].split("####")[-1].strip().replace(",", "") for r in raw_gsm]
    assert [p.answer for p in gsm8k] == expected


def test_fixture_copies_normalize_each_format(fixture_data_dir):
    """The handmade files (tests/support/handmade_benchmarks.py), in the real files' formats; expected
    answers by hand."""
    aime24 = load_dataset("aime24", fixture_data_dir)
    assert [p.id for p in aime24] == ["60", "61", "62", "63", "64", "65"]  # the file's integer ids
    assert [p.answer for p in aime24] == ["401", "15", "7", "13", "999", "0"]  # stored "015", "007", "000"
    aime25 = load_dataset("aime25", fixture_data_dir)  # no id field: row indices
    assert [(p.id, p.answer) for p in aime25] == [("0", "70"), ("1", "3"), ("2", "512")]
    amc = load_dataset("amc23", fixture_data_dir)  # floats 2.0, 27.0, 0.5, -1.0
    assert [p.answer for p in amc] == ["2", "27", "0.5", "-1"]
    math500 = load_dataset("math500", fixture_data_dir)
    latex = ["\\left( 2, \\frac{\\pi}{2} \\right)", "5\\sqrt{2}", "\\text{(B)}", "7"]  # stored " 007 " -> "7"
    assert [p.answer for p in math500] == latex
    assert math500[0].id == "test/precalculus/fixture-1.json"  # unique_id
    gsm8k = load_dataset("gsm8k", fixture_data_dir)  # "#### 24", "#### 1,250", "#### -6"
    assert [p.answer for p in gsm8k] == ["24", "1250", "-6"]
    assert gsm8k[1].problem == "A shop sells 250 pens a day for 5 days. How many pens does it sell?"


def test_fixture_copies_cover_every_benchmark(fixture_data_dir):
    benchmarks = {spec.file for name, spec in DATASETS.items() if name != "dapo-math-17k"}  # a training set
    assert benchmarks == {p.name for p in fixture_data_dir.iterdir()}


def test_data_dir_from_environment_and_limit(fixture_data_dir, monkeypatch):
    monkeypatch.setenv("FIPO_BENCH_DATA", str(fixture_data_dir))
    problems = load_dataset("aime24", limit=2)
    assert [p.id for p in problems] == ["60", "61"]


def test_missing_offline_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "aime24.jsonl")):
        load_dataset("aime24", tmp_path)


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ('{"problem": "p3"}', "missing field 'answer'"),
        ('{"problem": "p3", "answer": ""}', "empty answer"),
        ('{"problem": "p3", "answer": null}', "expected an answer"),
        ('{"answer": "3"}', "missing field 'problem'"),
        ('{"problem": "", "answer": "3"}', "non-empty string"),
        ('{"problem": "p3", "answer": 3', "invalid JSON"),
        ('["p3", "3"]', "expected an object"),
        ('{"problem": "p3", "answer": "4", "id": "a"}', "duplicate id 'a'"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, bad_line, message):
    path = write_lines(tmp_path / "data.jsonl", [
        '{"problem": "p1", "answer": "1", "id": "a"}', "", bad_line, '{"problem": "p4", "answer": "4"}',
    ])
    with pytest.raises(ValueError, match=rf"{path}:3: .*{message}"):
        load_dataset(str(path))


def test_named_dataset_validates_its_answers(tmp_path, fixture_data_dir):
    lines = (fixture_data_dir / "aime24.jsonl").read_text().splitlines()
    row = json.loads(lines[4])
    row["answer"] = "twelve"
    lines[4] = json.dumps(row)
    write_lines(tmp_path / "aime24.jsonl", lines)
    with pytest.raises(ValueError, match=r"aime24.jsonl:5: field 'answer': expected a number, got 'twelve'"):
        load_dataset("aime24", tmp_path)
    row["answer"] = "1000"
    lines[4] = json.dumps(row)
    write_lines(tmp_path / "aime24.jsonl", lines)
    with pytest.raises(ValueError, match="aime24.jsonl:5: .*AIME integer 0-999"):
        load_dataset("aime24", tmp_path)


def test_local_jsonl_with_custom_fields(tmp_path):
    path = write_lines(tmp_path / "mine.jsonl", [
        '{"question": "What is 2+2?", "solution": "4"}',
        '{"question": "Half of one?", "solution": "\\\\frac{1}{2}"}',
    ])
    problems = load_dataset(path, problem_field="question", answer_field="solution")
    assert problems == [Problem("0", "What is 2+2?", "4"), Problem("1", "Half of one?", "\\frac{1}{2}")]
    with pytest.raises(ValueError, match=r"mine.jsonl:1: missing field 'problem'"):
        load_dataset(path)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(FileNotFoundError, match="aime24, aime25, amc23, math500, gsm8k"):
        load_dataset("aime2024")


def test_parquet_without_pyarrow_is_a_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "d.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError, match="pip install pyarrow"):
        load_dataset(path)


def test_parquet_rows_through_pyarrow(tmp_path, monkeypatch):
    """The real code path, with a stand-in pyarrow (not installed here) that returns the table rows."""
    path = tmp_path / "d.parquet"
    path.write_bytes(b"PAR1")
    table = types.SimpleNamespace(to_pylist=lambda: [{"problem": "p", "answer": "007"}, {"problem": "q"}])
    parquet = types.ModuleType("pyarrow.parquet")
    parquet.read_table = lambda p: table if p == path else None
    pyarrow = types.ModuleType("pyarrow")
    pyarrow.parquet = parquet
    monkeypatch.setitem(sys.modules, "pyarrow", pyarrow)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", parquet)
    with pytest.raises(ValueError, match=r"d.parquet:row 2: missing field 'answer'"):
        load_dataset(path)
    table.to_pylist = lambda: [{"problem": "p", "answer": "007"}]
    assert load_dataset(path) == [Problem("0", "p", "7")]


def test_hub_path_with_a_fake_datasets_module(monkeypatch):
    calls = []

    def fake_load_dataset(repo, config, split):
        calls.append((repo, config, split))
        if repo == "openai/gsm8k":
            return [{"question": "q1", "answer": "work\n#### 1,234"}]
        return [{"id": 60, "problem": "p", "answer": "025", "url": "u"}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=fake_load_dataset))
    monkeypatch.delenv("FIPO_BENCH_DATA", raising=False)
    monkeypatch.setattr("fipo_bench.hub.unreachable_reason", lambda endpoint: None)  # the Hub answers
    assert load_dataset("aime24") == [Problem("60", "p", "25")]
    assert load_dataset("gsm8k") == [Problem("0", "q1", "1234")]
    assert calls == [("HuggingFaceH4/aime_2024", None, "train"), ("openai/gsm8k", "main", "test")]


def test_dapo_math_17k_rows_are_unwrapped_and_deduplicated(monkeypatch):
    from fipo_bench.evals.prompts import format_prompt

    def row(problem, answer, index):
        return {"data_source": "math_dapo", "prompt": [{"role": "user", "content": format_prompt(problem)}],
                "reward_model": {"style": "rule-lighteval/MATH_v2", "ground_truth": answer},
                "extra_info": {"index": index}}

    stored = [row("What is {1+1}?", "2", "a"), row("Find $x$.", "007", "b"), row("What is {1+1}?", "2", "c")]
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=lambda *a, **k: stored))
    monkeypatch.delenv("FIPO_BENCH_DATA", raising=False)
    monkeypatch.setattr("fipo_bench.hub.unreachable_reason", lambda endpoint: None)  # the Hub answers
    # The third row repeats the first problem; ids are the positions of the kept rows.
    expected = [Problem("0", "What is {1+1}?", "2"), Problem("1", "Find $x$.", "7")]
    assert load_dataset("dapo-math-17k") == expected

    stored[1] = {"prompt": [{"role": "user", "content": "no template"}],
                 "reward_model": {"ground_truth": "1"}}
    with pytest.raises(ValueError, match="row 2: prompt.0..content is not wrapped in the DAPO prompt"):
        load_dataset("dapo-math-17k")
    stored[1] = {"problem": "p", "answer": "1"}
    with pytest.raises(ValueError, match="row 2: expected DAPO-Math-17k fields"):
        load_dataset("dapo-math-17k")


def test_hub_without_datasets_explains_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    monkeypatch.delenv("FIPO_BENCH_DATA", raising=False)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[hub\]'.*--data-dir"):
        load_dataset("math500")


def test_unreachable_hub_is_said_at_once_with_what_to_do(monkeypatch, unreachable_hub):
    calls = []
    fake = types.SimpleNamespace(load_dataset=lambda *args: calls.append(args))
    monkeypatch.setitem(sys.modules, "datasets", fake)
    monkeypatch.delenv("FIPO_BENCH_DATA", raising=False)
    with pytest.raises(ConnectionError, match=rf"'aime24'.*does not answer at {unreachable_hub}.*--data-dir"
                                              r".*aime24\.jsonl.*HF_HUB_OFFLINE=1"):
        load_dataset("aime24")
    assert calls == []  # `datasets` (and its minute of retries) was never asked


def test_offline_hub_dataset_that_is_not_cached_names_the_way_out(monkeypatch):
    from huggingface_hub import constants

    def offline_load_dataset(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=offline_load_dataset))
    monkeypatch.delenv("FIPO_BENCH_DATA", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(FileNotFoundError, match=r"'gsm8k': openai/gsm8k did not load .*LocalEntryNotFound"
                                                r".*--data-dir .*gsm8k_test\.jsonl"):
        load_dataset("gsm8k")


@pytest.mark.parametrize(
    "answer, kind, expected",
    [
        ("025", "integer", "25"), (25, "integer", "25"), ("0", "integer", "0"), (27.0, "number", "27"),
        ("-1.0", "number", "-1"), (0.5, "number", "0.5"), ("x\n#### 1,000", "gsm8k", "1000"),
        ("#### -3", "gsm8k", "-3"), (" \\frac{1}{2} ", "latex", "\\frac{1}{2}"), ("007", "latex", "7"),
    ],
)
def test_normalize_gold(answer, kind, expected):
    assert normalize_gold(answer, kind) == expected


@pytest.mark.parametrize(
    "answer, kind",
    [("1.5", "integer"), ("-1", "integer"), ("abc", "number"), ("42", "gsm8k"), ("  ", "latex")],
)
def test_normalize_gold_rejects(answer, kind):
    with pytest.raises(ValueError):
        normalize_gold(answer, kind)


def test_dataset_table_names_match_the_offline_files(shared_data_dir):
    benchmarks = {spec.file for name, spec in DATASETS.items() if name != "dapo-math-17k"}  # a training set
    assert benchmarks <= {p.name for p in shared_data_dir.iterdir()}


DAPO_PROMPT = (
    "Solve the following math problem step by step. The last line of your response should be of the form "
    "Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n"
    "What is $\\{1\\}$?\n\n"
    'Remember to put your answer on its own line after "Answer:".'
)


def test_prompt_templates():
    problem = "What is $\\{1\\}$?"
    assert format_prompt(problem) == DAPO_PROMPT
    assert format_prompt(problem, "raw") == problem
    boxed = problem + "\nPlease reason step by step, and put your final answer within \\boxed{}."
    assert format_prompt(problem, "boxed") == boxed
    assert format_prompt(problem, "Q: {problem}\nA:") == "Q: " + problem + "\nA:"
    with pytest.raises(ValueError, match="unknown prompt template 'nope'"):
        format_prompt(problem, "nope")


def test_prompt_uses_the_chat_template_when_there_is_one():
    class ChatTokenizer:
        chat_template = "{{ messages }}"

        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            assert tokenize is False and add_generation_prompt is True
            return "<user>" + messages[0]["content"] + "</user><assistant>"

    assert format_prompt("2+2?", "raw", ChatTokenizer()) == "<user>2+2?</user><assistant>"
    plain = types.SimpleNamespace(chat_template=None)
    assert format_prompt("2+2?", "raw", plain) == "2+2?"
