"""The training curriculum: from free-text CCTA reports to hierarchical, anatomically grounded instructions.

Modules, one responsibility each:

* ``schema``: the curriculum record (shared with the VLM trainer).
* report findings and the deterministic report parser live in :mod:`cardiovlm.tools.reports` (the report store
  reads reports too).
* ``templates`` (+ ``templates.yaml``): report-understanding templates and their answer models.
* ``llm``: the pluggable chat models behind the templates (embedded default, OpenAI-compatible).
* ``builder`` (+ ``phrasings.yaml``): stages 1-3 of instructions, the versioned JSONL file.
* ``dataset``: the torch Dataset pairing instructions with volumes and targets.
* ``real_data``: the manifest format for real studies and TotalSegmentator pseudo-labels.
* the ``cardiovlm curriculum`` command is :mod:`cardiovlm.ui.cli.curriculum`.
"""
