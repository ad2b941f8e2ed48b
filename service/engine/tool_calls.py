"""Which vLLM tool-call parser fits a model, read from its chat template, so that `tools` work with
no operator setting (`OPENTUNE_ENGINE_TOOL_CALL_PARSER=auto`, the default).

The parser turns the model's own tool-call text back into `tool_calls` for tool_choice "auto". For
a named or "required" tool_choice vLLM does not need the model's format at all: it constrains the
output to the function's parameter schema and returns it as a tool call, with any parser that
supports that (all the ones below do). So where no template marker fits, `hermes` is still set:
named and required choices then work for any model, and "auto" returns plain text unless the
model writes Hermes-style `<tool_call>` blocks.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

# What a chat template writes for a tool call -> vLLM's parser for it. First match wins.
_TEMPLATE_MARKERS = (
    ("[TOOL_CALLS]", "mistral"),
    ("<|python_tag|>", "llama3_json"),
    ("Environment: ipython", "llama3_json"),
    ("<tool_call>", "hermes"),  # Qwen2.5, Qwen3, Hermes and their fine-tunes
)
FALLBACK_PARSER = "hermes"


def chat_template(model_path: Path) -> str:
    """The model's chat template text ("" when it has none or it cannot be read)."""
    standalone = model_path / "chat_template.jinja"
    if standalone.is_file():
        return standalone.read_text(errors="replace")
    try:
        config = json.loads((model_path / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        return ""
    template = config.get("chat_template") if isinstance(config, dict) else None
    if isinstance(template, list):  # named templates: [{"name": "default", "template": "..."}, ...]
        return "\n".join(str(t.get("template", "")) for t in template if isinstance(t, dict))
    return template if isinstance(template, str) else ""


def pick_tool_call_parser(model_path: Path) -> str:
    template = chat_template(model_path)
    for marker, parser in _TEMPLATE_MARKERS:
        if marker in template:
            return parser
    return FALLBACK_PARSER


def tool_call_parser(setting: str, model_path: Path) -> str | None:
    """The parser for `--tool-call-parser`: picked for "auto", none for "none", else as set."""
    if setting == "none":
        return None
    if setting != "auto":
        return setting
    parser = pick_tool_call_parser(model_path)
    logger.info("Tool-call parser for %s: %s (from its chat template)", model_path.name, parser)
    return parser
