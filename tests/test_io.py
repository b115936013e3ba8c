"""fipo_bench.io: atomic writes keep the old file on failure; JSON-lines reads name file and line."""

import json

import pytest

from fipo_bench.io import append_jsonl, iter_jsonl, json_safe, read_json, read_jsonl, write_json, write_jsonl


def test_atomic_write_keeps_the_old_file_when_serialisation_fails(tmp_path):
    path = tmp_path / "config.json"
    write_json(path, {"lr": 1e-3})
    with pytest.raises(ValueError):  # NaN is not JSON: the write must fail before touching the file
        write_json(path, {"lr": float("nan")})
    assert read_json(path) == {"lr": 1e-3}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # no temp file left behind


def test_jsonl_round_trip_and_append(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_jsonl(path, [{"step": 0}, {"step": 1}])
    append_jsonl(path, {"step": 2})
    assert read_jsonl(path) == [{"step": 0}, {"step": 1}, {"step": 2}]
    assert [lineno for lineno, _ in iter_jsonl(path)] == [1, 2, 3]


def test_truncated_last_line_from_a_killed_writer_is_skipped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0}\n{"step": 1}\n{"step": 2, "acc', encoding="utf-8")
    assert read_jsonl(path) == [{"step": 0}, {"step": 1}]


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0}\nnot json\n{"step": 2}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"metrics\.jsonl:2: invalid JSON"):
        read_jsonl(path)
    path.write_text('{"step": 0}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"metrics\.jsonl:2: expected a JSON object"):
        read_jsonl(path)


def test_read_json_error_names_line_and_column(tmp_path):
    path = tmp_path / "run.json"
    path.write_text('{\n  "a": 1,\n  "b": \n}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"run\.json:4:1"):
        read_json(path)


def test_json_safe_replaces_non_finite_floats():
    value = {"a": float("inf"), "b": [1.0, float("nan")], "c": "x"}
    assert json.dumps(json_safe(value)) == '{"a": null, "b": [1.0, null], "c": "x"}'
