"""The assistant's LangChain tools, one file each; :mod:`cardiovlm.assistant.registry` lists them."""
