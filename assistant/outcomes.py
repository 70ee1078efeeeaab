"""What each tool call of a turn gave back: its typed result or its typed failure.

Every assistant tool returns its typed result (a pydantic model from ``tools/`` or
``assistant/vlm_tools``, a list of them for report hits) as the ``artifact`` of its ``ToolMessage``;
the JSON in the message's content is what the chat model reads and is never parsed back here. A
failed call carries a :class:`~cardiovlm.assistant.tool_errors.ToolFailure`. Only a message that lost its
artifact (a conversation restored from a file, a message written by hand) is read from its text,
validated against the tool's declared result type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from pydantic import BaseModel, ValidationError

from cardiovlm.assistant.tool_errors import ToolFailure, read_tool_error


@dataclass(frozen=True)
class ToolOutcome:
    """One tool call of the current turn and what came back."""

    name: str
    args: dict
    value: Any = None  # the typed result when the call succeeded (a model, or a list of models)
    failure: ToolFailure | None = None  # why it failed, when it did

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def error(self) -> str | None:
        """The failure as the model read it (message and code tag), or None."""
        return None if self.failure is None else self.failure.text().removeprefix("error: ")

    @property
    def result(self) -> dict | None:
        """The typed result as a JSON-like dict, for readers not yet moved to :attr:`value`
        (the planner's lesion look-ups, the reports panel); a list result is under ``items``."""
        if self.value is None:
            return None
        if isinstance(self.value, list):
            return {"items": [_plain(v) for v in self.value]}
        return _plain(self.value)


def _plain(value: Any) -> Any:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def outcome_of(name: str, args: dict, message: ToolMessage) -> ToolOutcome:
    """The outcome a ToolMessage records, from its artifact (its text only when it has none)."""
    if message.status == "error":
        failure = message.artifact if isinstance(message.artifact, ToolFailure) else read_tool_error(_text(message))
        return ToolOutcome(name, args, failure=failure)
    if message.artifact is not None:
        return ToolOutcome(name, args, value=message.artifact)
    from cardiovlm.assistant.registry import result_adapter

    adapter = result_adapter(name)
    if adapter is None:
        return ToolOutcome(name, args, failure=ToolFailure(
            f"{name} is not a tool of this assistant, so its result cannot be read", "tool.unknown", None))
    try:
        return ToolOutcome(name, args, value=adapter.validate_json(_text(message)))
    except ValidationError as err:
        return ToolOutcome(name, args, failure=ToolFailure(
            f"the result of {name} could not be read ({err.error_count()} invalid fields)", "tool.result_unreadable",
            type(err).__name__))


def _text(message: ToolMessage) -> str:
    import json

    return message.content if isinstance(message.content, str) else json.dumps(message.content)


def outcomes(messages: list[BaseMessage]) -> list[ToolOutcome]:
    """Pair each tool call of the AI messages with its ToolMessage, in the order the results came."""
    calls = {}
    for m in messages:
        if isinstance(m, AIMessage):
            for call in m.tool_calls:
                calls[call["id"]] = call
    return [outcome_of(calls[m.tool_call_id]["name"], dict(calls[m.tool_call_id]["args"]), m)
            for m in messages if isinstance(m, ToolMessage) and m.tool_call_id in calls]


def succeeded(done: list[ToolOutcome], name: str) -> list[ToolOutcome]:
    """The calls of tool ``name`` that returned a result (the one "ok" rule of the planner, verdicts and answer)."""
    return [o for o in done if o.name == name and o.ok and o.value is not None]


def failed(done: list[ToolOutcome], name: str | None = None) -> list[ToolOutcome]:
    return [o for o in done if not o.ok and (name is None or o.name == name)]
