"""The assistant's tools: one LangChain tool per capability, each defined beside its code.

``tool.name`` is the one key of a tool everywhere (planner, trace, UI). Optional tools are listed
only when they can run: TotalSegmentator only when it and its weights are installed (its absence
is reported once by :func:`unavailable_tools`). The VLM tools are always listed: without a trained
checkpoint they answer "no trained VLM checkpoint is installed", which the clinician should read.
"""

from __future__ import annotations

import importlib

from langchain_core.tools import BaseTool

# (module, attribute) of every tool the assistant may call, in the order a clinician would expect.
TOOL_LOCATIONS: tuple[tuple[str, str], ...] = (
    ("tools.study_info", "study_info_tool"),
    ("tools.segmentation", "segment_anatomy_tool"),
    ("tools.calcium", "calcium_score_tool"),
    ("tools.stenosis", "measure_lesion_tool"),
    ("tools.stent", "stent_coverage_tool"),
    ("tools.risk", "risk_context_tool"),
    ("tools.report_store", "retrieve_reports_tool"),
    ("assistant.vlm_tools", "vlm_segment_tool"),
    ("assistant.vlm_tools", "vlm_locate_tool"),
    ("assistant.vlm_tools", "vlm_ask_tool"),
)
OPTIONAL_TOOL = ("assistant.totalseg_tool", "totalsegmentator_tool")


def available_tools() -> list[BaseTool]:
    tools = [getattr(importlib.import_module(module), attribute) for module, attribute in TOOL_LOCATIONS]
    from assistant.totalseg_tool import unavailable_reason

    if unavailable_reason() is None:
        module, attribute = OPTIONAL_TOOL
        tools.append(getattr(importlib.import_module(module), attribute))
    return tools


def unavailable_tools() -> dict[str, str]:
    """Tools left out of :func:`available_tools`, with why (stated once, e.g. by the CLI and the UI)."""
    from assistant.totalseg_tool import unavailable_reason

    reason = unavailable_reason()
    return {"totalsegmentator_anatomy": reason} if reason else {}


def tool_names() -> list[str]:
    return [t.name for t in available_tools()]
