"""Pluggable language models behind the report templates, all LangChain chat models.

* ``default``: :class:`EmbeddedReportModel`, the deterministic report parser wrapped as a
  ``BaseChatModel``; offline, no weights. It reads the template id, parameters and report from the
  rendered messages and answers with JSON, exactly what a real model is asked to do.
* ``openai:MODEL@URL``: any OpenAI-compatible endpoint (vLLM, Ollama, TGI) through
  ``langchain_openai.ChatOpenAI(base_url=URL, model=MODEL)``.

Both are driven the same way by :func:`ask`: ``with_structured_output(Answer, method="json_mode",
include_raw=True)``, pydantic validation, and one retry that shows the model its validation error.
A GGUF backend is not provided (``gguf:`` specs are refused with a clear message).
"""

from __future__ import annotations

import json
import re
from operator import itemgetter
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.output_parsers import PydanticOutputParser
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from pydantic import BaseModel

from cardiovlm.tools.core.errors import CardioVLMError
from cardiovlm.tools.reports.parser import parse_report
from cardiovlm.training.curriculum.templates import ANSWER_MODELS, answer_from_findings, get_template, render_messages


class ReportModelError(CardioVLMError):
    """A language model gave no valid answer to a template, even after the retry."""

    code = "curriculum.report_model_failed"


_FIELD = re.compile(r"^(Template|Parameters): (.*)$", re.M)
_REPORT = re.compile(r"<<<\n(.*)\n>>>", re.S)


class EmbeddedReportModel(BaseChatModel):
    """The offline default: answers the report templates with the deterministic parser.

    Examples::

        >>> model = EmbeddedReportModel()
        >>> ask(model, "stent_presence", "Patent stent in the mid LAD.", anatomy="mid LAD").answer
        'yes'
    """

    @property
    def _llm_type(self) -> str:
        return "cardiovlm-embedded-report-parser"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        # The last human message carries the template; retries append more turns after it.
        prompt = next(m.content for m in reversed(messages) if isinstance(m, HumanMessage)
                      and "Template:" in str(m.content))
        fields = dict(_FIELD.findall(str(prompt)))
        report = _REPORT.search(str(prompt))
        if "Template" not in fields or report is None:
            raise ValueError("the embedded report model only answers prompts rendered from templates.yaml")
        findings = parse_report(report.group(1))
        answer = answer_from_findings(fields["Template"], findings, **json.loads(fields.get("Parameters", "{}")))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=answer.model_dump_json()))])

    def with_structured_output(self, schema: type[BaseModel], *, include_raw: bool = False,
                               method: str = "json_mode", **kwargs: Any) -> Runnable:
        """Same contract as ``ChatOpenAI.with_structured_output(..., method="json_mode")``."""
        if method != "json_mode":
            raise ValueError(f"the embedded report model supports method='json_mode' only, not {method!r}")
        parser = PydanticOutputParser(pydantic_object=schema)
        if not include_raw:
            return self | parser
        parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        fallback = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=self) | parsed.with_fallbacks([fallback], exception_key="parsing_error")


def make_chat_model(spec: str | None = None, *, api_key: str | None = None, timeout_s: float = 120.0) -> BaseChatModel:
    """The chat model a spec names: ``default`` or ``openai:MODEL@URL`` (settings ``llm`` when None).

    Raises:
        ValueError: an unknown or malformed spec.
    """
    from cardiovlm.tools.core.settings import get_settings

    settings = get_settings()
    spec = spec or settings.llm
    if spec == "default":
        return EmbeddedReportModel()
    if spec.startswith("openai:"):
        model, sep, url = spec[len("openai:"):].partition("@")
        if not model or not sep or not url.startswith(("http://", "https://")):
            raise ValueError(f"malformed LLM spec {spec!r}; expected openai:MODEL@http://host:port/v1")
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(model=model, base_url=url, api_key=api_key or settings.openai_api_key,
                          temperature=0, timeout=timeout_s, max_retries=0)
    if spec.startswith("gguf:"):
        raise ValueError("gguf backends are not implemented in the curriculum builder; use 'default' or "
                         "serve the GGUF model with an OpenAI-compatible server (llama.cpp server, Ollama) "
                         "and pass openai:MODEL@URL")
    raise ValueError(f"unknown LLM spec {spec!r}; expected 'default' or 'openai:MODEL@URL'")


def ask(model: BaseChatModel, template_id: str, report: str, **params) -> BaseModel:
    """Ask one template about one report; returns the template's validated pydantic answer.

    An answer that does not validate is shown back to the model with the validation error, once.

    Raises:
        ReportModelError: the second answer does not validate either.
        ValueError: unknown template or missing parameters.
    """
    schema = ANSWER_MODELS[get_template(template_id).form]
    messages: list[BaseMessage] = []
    for role, text in render_messages(template_id, report, **params):
        messages.append(SystemMessage(text) if role == "system" else HumanMessage(text))
    structured = model.with_structured_output(schema, method="json_mode", include_raw=True)
    for _attempt in range(2):
        result = structured.invoke(messages)
        if result["parsed"] is not None:
            return result["parsed"]
        error = result["parsing_error"]
        messages += [result["raw"], HumanMessage(
            f"Your answer did not validate against the schema: {error}. "
            "Reply again with only the corrected JSON object.")]
    raise ReportModelError(f"template {template_id!r}: no valid answer after one retry: {error}")


def extract_findings(model: BaseChatModel, report: str) -> Any:
    """The report's structured findings (:class:`ReportFindings`) from any backend."""
    return ask(model, "extract_findings", report)
