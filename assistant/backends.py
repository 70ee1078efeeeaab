"""Chat-model backends for the assistant, chosen by settings: the same graph serves them all.

- ``default``: the embedded clinical planner (offline, weight-free, deterministic).
- ``openai:MODEL@URL``: any OpenAI-compatible endpoint (vLLM, Ollama, TGI) through langchain-openai,
  for free-form reasoning on a hospital server. The API key comes from settings.

Tiny local GGUF models were tried as planners and chose tools or arguments wrongly, so none is
offered as a backend here.
"""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel

from cardiovlm.tools.core.settings import Settings, get_settings


def parse_llm_spec(spec: str) -> tuple[str, str | None, str | None]:
    """'default' -> ('default', None, None); 'openai:MODEL@URL' -> ('openai', MODEL, URL)."""
    if spec == "default":
        return "default", None, None
    if spec.startswith("openai:") and "@" in spec:
        model, url = spec.removeprefix("openai:").split("@", 1)
        if model and url.startswith(("http://", "https://")):
            return "openai", model, url
    raise ValueError(f"unknown language model {spec!r}: use 'default' or 'openai:MODEL@http://host:port/v1'")


def chat_model(spec: str | None = None, settings: Settings | None = None) -> BaseChatModel:
    settings = settings or get_settings()
    kind, model, url = parse_llm_spec(spec or settings.llm)
    if kind == "default":
        from cardiovlm.assistant.planner import ClinicalPlanner

        return ClinicalPlanner()
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model=model, base_url=url, api_key=settings.openai_api_key, temperature=0,
                      max_retries=1, timeout=120)
