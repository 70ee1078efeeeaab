"""The assistant's tools: one LangChain tool per capability, each defined beside its code.

``tool.name`` is the one key of a tool everywhere (planner, trace, UI). Optional tools are listed
only when they can run: TotalSegmentator only when it and its weights are installed (its absence
is reported once by :func:`unavailable_tools`). The VLM tools are always listed: without a trained
checkpoint they answer "no trained VLM checkpoint is installed", which the clinician should read.

Every tool listed here answers with ``response_format="content_and_artifact"``: the JSON the chat
model reads as content and the typed result (:data:`TOOL_LOCATIONS` names its type) as the
``ToolMessage``'s artifact, which is what the planner, the verdicts and the answer read. A tool
whose function still returns only its dump is wrapped by :func:`typed_tool`, which validates that
dump into the declared type once, where the tool returns.
"""

from __future__ import annotations

import importlib
from functools import cache
from types import GenericAlias
from typing import Any

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from pydantic import TypeAdapter

# (module, tool attribute, result type attribute, whether the tool returns a list of results) of every
# tool the assistant may call, in the order a clinician would expect.
TOOL_LOCATIONS: tuple[tuple[str, str, str, bool], ...] = (
    ("cardiovlm.assistant.tools.study_info", "study_info_tool", "StudyInfo", False),
    ("cardiovlm.assistant.tools.segment_anatomy", "segment_anatomy_tool", "SegmentationResult", False),
    ("cardiovlm.assistant.tools.calcium_score", "calcium_score_tool", "CalciumScore", False),
    ("cardiovlm.assistant.tools.measure_lesion", "measure_lesion_tool", "LesionMeasurement", False),
    ("cardiovlm.assistant.tools.stent_coverage", "stent_coverage_tool", "StentPlan", False),
    ("cardiovlm.assistant.tools.risk_context", "risk_context_tool", "RiskContext", False),
    ("cardiovlm.tools.reports.api", "retrieve_reports_tool", "ReportHit", True),
    ("cardiovlm.assistant.tools.vlm", "vlm_segment_tool", "VLMSegmentResult", False),
    ("cardiovlm.assistant.tools.vlm", "vlm_locate_tool", "VLMLocateResult", False),
    ("cardiovlm.assistant.tools.vlm", "vlm_ask_tool", "VLMAskResult", False),
)
OPTIONAL_TOOL = ("cardiovlm.assistant.tools.totalseg", "totalsegmentator_tool", "SegmentationResult", False)


def _result_type(module: str, attribute: str, many: bool) -> Any:
    kind = getattr(importlib.import_module(module), attribute)
    return GenericAlias(list, (kind,)) if many else kind


@cache
def _adapters() -> dict[str, TypeAdapter]:
    out = {}
    for module, attribute, result, many in (*TOOL_LOCATIONS, OPTIONAL_TOOL):
        name = getattr(importlib.import_module(module), attribute).name
        out[name] = TypeAdapter(_result_type(module, result, many))
    return out


def result_adapter(tool_name: str) -> TypeAdapter | None:
    """The validator of ``tool_name``'s typed result, or None for a name that is not a tool here."""
    return _adapters().get(tool_name)


def typed_tool(tool: BaseTool, result: TypeAdapter) -> BaseTool:
    """``tool`` answering with its JSON-able dump as content and its typed result as artifact.

    A direct ``tool.invoke(args)`` still returns the dump (the content); a call the graph makes
    returns a ToolMessage carrying both.
    """
    if tool.response_format == "content_and_artifact":
        return tool
    function = tool.func

    def run(*args, config: RunnableConfig, **kwargs):
        raw = function(*args, config=config, **kwargs)
        return raw, result.validate_python(raw)

    return tool.model_copy(update={"func": run, "response_format": "content_and_artifact"})


def available_tools() -> list[BaseTool]:
    from cardiovlm.tools.segmentation.totalseg import unavailable_reason

    chosen = list(TOOL_LOCATIONS) + ([OPTIONAL_TOOL] if unavailable_reason() is None else [])
    adapters = _adapters()
    tools = [getattr(importlib.import_module(module), attribute) for module, attribute, _, _ in chosen]
    return [typed_tool(t, adapters[t.name]) for t in tools]


def unavailable_tools() -> dict[str, str]:
    """Tools left out of :func:`available_tools`, with why (stated once, e.g. by the CLI and the UI)."""
    from cardiovlm.tools.segmentation.totalseg import unavailable_reason

    reason = unavailable_reason()
    return {"totalsegmentator_anatomy": reason} if reason else {}


def tool_names() -> list[str]:
    return [t.name for t in available_tools()]
