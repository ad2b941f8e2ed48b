import json
from pathlib import Path

import pytest

from trainer.data import DataValidationError, load_chat_examples, load_examples


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def _example(i: int) -> str:
    return json.dumps(
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
    )


def test_valid_file_loads(tmp_path: Path) -> None:
    examples = load_chat_examples(_write(tmp_path / "t.jsonl", [_example(i) for i in range(12)]))
    assert len(examples) == 12
    assert examples[3].messages[1]["content"] == "a3"


def test_fewer_than_ten_examples(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError) as err:
        load_chat_examples(_write(tmp_path / "t.jsonl", [_example(i) for i in range(7)]))
    assert err.value.code == "invalid_n_examples"
    assert err.value.message == "Training file has 7 example(s), but must have at least 10 examples"
    assert err.value.param == "training_file"


def test_not_json_names_the_example(tmp_path: Path) -> None:
    lines = [_example(i) for i in range(12)]
    lines[4] = "this is not json"
    with pytest.raises(DataValidationError) as err:
        load_chat_examples(_write(tmp_path / "t.jsonl", lines))
    assert err.value.code == "invalid_training_file"
    assert "Example 5" in err.value.message


def test_missing_assistant_message(tmp_path: Path) -> None:
    lines = [_example(i) for i in range(12)]
    lines[11] = json.dumps({"messages": [{"role": "user", "content": "hi"}]})
    with pytest.raises(DataValidationError) as err:
        load_chat_examples(_write(tmp_path / "t.jsonl", lines))
    assert err.value.code == "invalid_training_file"
    assert "Example 12" in err.value.message and "assistant" in err.value.message


def test_bad_role_names_message_position(tmp_path: Path) -> None:
    lines = [_example(i) for i in range(12)]
    lines[2] = json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]})
    with pytest.raises(DataValidationError) as err:
        load_chat_examples(_write(tmp_path / "t.jsonl", lines))
    assert "Example 3, message 2" in err.value.message


def test_validation_file_uses_its_own_code(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError) as err:
        load_chat_examples(_write(tmp_path / "v.jsonl", ["{"]), param="validation_file")
    assert (err.value.code, err.value.param) == ("invalid_validation_file", "validation_file")


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "b.jsonl"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataValidationError) as err:
        load_chat_examples(path)
    assert err.value.code == "invalid_training_file"


def test_preference_file_with_supervised_method(tmp_path: Path) -> None:
    record = {
        "input": {"messages": [{"role": "user", "content": "x"}]},
        "preferred_output": [{"role": "assistant", "content": "a"}],
        "non_preferred_output": [{"role": "assistant", "content": "b"}],
    }
    with pytest.raises(DataValidationError) as err:
        load_chat_examples(_write(tmp_path / "p.jsonl", [json.dumps(record)] * 12))
    assert "preference" in err.value.message


def _pair(i: int, **overrides: object) -> str:
    record: dict[str, object] = {
        "input": {"messages": [{"role": "user", "content": f"q{i}"}]},
        "preferred_output": [{"role": "assistant", "content": "good"}],
        "non_preferred_output": [{"role": "assistant", "content": "bad"}],
    }
    record.update(overrides)
    return json.dumps(record)


def test_preference_file_loads_both_key_styles(tmp_path: Path) -> None:
    lines = [_pair(i) for i in range(10)]
    lines.append(
        json.dumps(
            {
                "input": {"messages": [{"role": "user", "content": "old"}]},
                "preferred_completion": [{"role": "assistant", "content": "a"}],
                "non_preferred_completion": [{"role": "assistant", "content": "b"}],
            }
        )
    )
    examples = load_examples(_write(tmp_path / "p.jsonl", lines), "dpo")
    assert len(examples) == 11
    assert (examples[-1].preferred["content"], examples[-1].non_preferred["content"]) == ("a", "b")


def test_chat_file_with_dpo_method(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError) as err:
        load_examples(_write(tmp_path / "c.jsonl", [_example(i) for i in range(12)]), "dpo")
    assert err.value.code == "invalid_training_file"
    assert "chat format" in err.value.message and "'dpo'" in err.value.message


def test_preference_output_must_be_one_assistant_message(tmp_path: Path) -> None:
    lines = [_pair(i) for i in range(12)]
    lines[5] = _pair(5, non_preferred_output=[{"role": "user", "content": "x"}])
    with pytest.raises(DataValidationError) as err:
        load_examples(_write(tmp_path / "p.jsonl", lines), "dpo")
    assert "Example 6" in err.value.message and "non_preferred_output" in err.value.message
