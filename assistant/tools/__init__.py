"""The assistant's LangChain tools, one file each; :mod:`assistant.registry` lists them."""
