"""The engine's tool-call parser and JSON settings, picked with no operator setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.config import Settings
from service.engine.process import engine_command
from service.engine.tool_calls import FALLBACK_PARSER, pick_tool_call_parser, tool_call_parser

QWEN = "{%- for m in messages %}{{ '<tool_call>' }}{{ m.content | tojson }}{{ '</tool_call>' }}{% endfor %}"
LLAMA3 = "{{- '<|python_tag|>' + tool_call.name }}"
MISTRAL = "{{ '[TOOL_CALLS]' + tool_calls | tojson }}"


def _model(tmp_path: Path, template: object, standalone: bool = False) -> Path:
    folder = tmp_path / "model"
    folder.mkdir(parents=True)
    if standalone:
        (folder / "chat_template.jinja").write_text(str(template))
    else:
        (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    return folder


@pytest.mark.parametrize(
    ("template", "parser"),
    [(QWEN, "hermes"), (LLAMA3, "llama3_json"), (MISTRAL, "mistral"), ("{{ messages }}", FALLBACK_PARSER)],
)
def test_the_parser_follows_the_chat_template(tmp_path: Path, template: str, parser: str) -> None:
    assert pick_tool_call_parser(_model(tmp_path, template)) == parser


def test_templates_in_a_file_or_as_named_list_are_read(tmp_path: Path) -> None:
    assert pick_tool_call_parser(_model(tmp_path / "a", MISTRAL, standalone=True)) == "mistral"
    named = [{"name": "default", "template": "{{ x }}"}, {"name": "tool_use", "template": LLAMA3}]
    assert pick_tool_call_parser(_model(tmp_path / "b", named)) == "llama3_json"


def test_a_model_without_template_gets_the_fallback(tmp_path: Path) -> None:
    assert pick_tool_call_parser(tmp_path) == FALLBACK_PARSER


def test_the_setting_overrides_or_turns_tools_off(tmp_path: Path) -> None:
    model = _model(tmp_path, QWEN)
    assert tool_call_parser("auto", model) == "hermes"
    assert tool_call_parser("none", model) is None
    assert tool_call_parser("pythonic", model) == "pythonic"


def test_the_engine_starts_with_tools_and_compact_json_by_default(tmp_path: Path) -> None:
    command = engine_command(Settings(), _model(tmp_path, QWEN), 8001, "tiny")
    assert command[command.index("--tool-call-parser") + 1] == "hermes"
    assert "--enable-auto-tool-choice" in command
    assert command[command.index("--tool-strict-level") + 1] == "parameter"
    config = json.loads(command[command.index("--structured-outputs-config") + 1])
    assert config == {"backend": "xgrammar", "disable_any_whitespace": True}
    plain = engine_command(
        Settings(engine_tool_call_parser="none", engine_compact_json=False), tmp_path / "model", 8001, "tiny"
    )
    assert "--tool-call-parser" not in plain and "--structured-outputs-config" not in plain
