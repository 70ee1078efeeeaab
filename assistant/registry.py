"""The assistant's tools: one LangChain tool per capability, each defined beside its code.

``tool.name`` is the one key of a tool everywhere (planner, trace, UI). Optional tools are listed
only when they can run: TotalSegmentator only when its weights are installed (its absence is
reported once by :func:`unavailable_tools`).
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
)


def available_tools() -> list[BaseTool]:
    tools = []
    for module_name, attribute in TOOL_LOCATIONS:
        module = importlib.import_module(module_name)
        tools.append(getattr(module, attribute))
    return tools


def tool_names() -> list[str]:
    return [t.name for t in available_tools()]
