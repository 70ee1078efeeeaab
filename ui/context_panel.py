"""The clinical context panel: the patient's risk factors and labs, filled from the case and the DICOM
header, editable, and used by the risk answers (which name the values they used and the ones missing).

How to wire it into ``ui/app.py`` (inside the ``gr.Blocks``; ``state`` is the app's ``UiSession``,
whose ``.session`` is the :class:`cardiovlm.assistant.session.Session`)::

    from cardiovlm.ui.context_panel import build_context_panel, context_view, save_context

    clinical = build_context_panel()          # an Accordion "Clinical context": fields, "Save", a note
    outs = clinical.outputs                   # [*clinical.fields, clinical.message]

    # 1. after every successful load (a new patient): show what the case and the header say
    load_event.then(lambda state: context_view(state.session), state, outs)

    # 2. "Save": the edited values go into the session; the next risk answer uses them
    clinical.save.click(lambda state, *values: save_context(state.session, *values),
                        [state, *clinical.fields], outs)

Both handlers return one update per field (in ``FIELDS`` order) and the message: where each known
value came from ("case clinical file", "DICOM header", "entered by the user") and which values the
MESA score still lacks. A value out of range comes back as a ``⚠️`` message naming it and nothing is
changed (``cardiovlm.tools.quant.clinical_context.ClinicalContextError`` underneath), never a traceback. An empty
field means "not known"; yes/no fields have "unknown" too. Clearing the chat does not clear these
values; loading another study replaces them with that study's.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from cardiovlm.tools.quant.clinical_context import FIELD_NAMES, ClinicalContext, ClinicalContextError
from cardiovlm.tools.quant.troponin import ASSAYS

# The form's fields, in order: (ClinicalContext field, label, kind).
FIELDS: tuple[tuple[str, str, str], ...] = (
    ("age", "Age (years)", "number"),
    ("sex", "Sex", "sex"),
    ("race", "Race (MESA groups)", "race"),
    ("systolic_bp_mmhg", "Systolic blood pressure (mmHg)", "number"),
    ("total_cholesterol_mg_dl", "Total cholesterol (mg/dL)", "number"),
    ("hdl_cholesterol_mg_dl", "HDL cholesterol (mg/dL)", "number"),
    ("smoker", "Current smoker", "flag"),
    ("diabetes", "Diabetes", "flag"),
    ("hypertension_treatment", "Blood-pressure medication", "flag"),
    ("lipid_lowering", "Lipid-lowering medication (e.g. statin)", "flag"),
    ("family_history_mi", "Family history of heart attack", "flag"),
    ("troponin_value", "hs-troponin I", "number"),
    ("troponin_unit", "Troponin unit", "unit"),
    ("troponin_assay", "Troponin assay", "assay"),
)
UNKNOWN = "unknown"
HEADINGS = {"case clinical file": "From the case's clinical file", "DICOM header": "From the DICOM header",
            "entered by the user": "Entered by the user", "given in the question": "Given in a question"}
RACES = [("unknown", UNKNOWN), ("white", "white"), ("Chinese", "chinese"), ("African American", "african_american"),
         ("Hispanic", "hispanic")]


@dataclass
class ContextPanel:
    fields: list  # one component per entry of FIELDS, in that order
    save: gr.Button
    message: gr.Markdown

    @property
    def outputs(self) -> list:
        """The components both handlers update, in their return order."""
        return [*self.fields, self.message]


def _component(name: str, label: str, kind: str):
    elem_id = f"clinical-{name.replace('_', '-')}"
    if kind == "number":
        return gr.Number(value=None, label=label, elem_id=elem_id, minimum=0)
    if kind == "sex":
        return gr.Radio([UNKNOWN, "male", "female"], value=UNKNOWN, label=label, elem_id=elem_id)
    if kind == "race":
        return gr.Dropdown(RACES, value=UNKNOWN, label=label, elem_id=elem_id)
    if kind == "flag":
        return gr.Radio([UNKNOWN, "yes", "no"], value=UNKNOWN, label=label, elem_id=elem_id)
    if kind == "unit":
        return gr.Dropdown([UNKNOWN, "ng/L", "pg/mL", "ng/mL"], value=UNKNOWN, label=label, elem_id=elem_id)
    return gr.Dropdown([UNKNOWN, *(a.name for a in ASSAYS.values())], value=UNKNOWN, label=label, elem_id=elem_id,
                       allow_custom_value=True)


def build_context_panel(*, open: bool = False) -> ContextPanel:
    """The panel's components, built where it is called (inside a ``gr.Blocks``)."""
    with gr.Accordion("Clinical context", open=open, elem_id="clinical-panel"):
        components = []
        for start in range(0, len(FIELDS), 3):
            with gr.Row():
                components += [_component(*entry) for entry in FIELDS[start:start + 3]]
        save = gr.Button("Save clinical context", size="sm", elem_id="clinical-save")
        message = gr.Markdown("", elem_id="clinical-message")
    return ContextPanel(fields=components, save=save, message=message)


def _shown_value(clinical: ClinicalContext, name: str, kind: str):
    value = getattr(clinical, name)
    if value is None:
        return None if kind == "number" else UNKNOWN
    if kind == "flag":
        return "yes" if value else "no"
    return value


def _form_value(value, kind: str):
    """A form value as the clinical context stores it (None: not known)."""
    if value is None or value == "" or value == UNKNOWN:
        return None
    if kind == "flag":
        return value == "yes"
    if kind == "number":
        return int(value) if float(value).is_integer() else float(value)
    return value


def summary(clinical: ClinicalContext) -> str:
    """Where the known values came from, and what the MESA score still needs."""
    by_source: dict[str, list[str]] = {}
    for name in clinical.known():
        by_source.setdefault(clinical.sources.get(name, "source not recorded"), []).append(FIELD_NAMES[name])
    lines = [f"**{HEADINGS.get(source, source)}:** {', '.join(names)}" for source, names in by_source.items()]
    missing = clinical.missing()
    lines.append(f"**Missing for the MESA risk score:** {', '.join(missing)}" if missing
                 else "**MESA risk score:** every value it needs is known")
    return "  \n".join(lines) if clinical.known() else "No clinical values are known yet.  \n" + lines[-1]


def _view(clinical: ClinicalContext, message: str) -> tuple:
    return (*(_shown_value(clinical, name, kind) for name, _, kind in FIELDS), message)


def context_view(session) -> tuple:
    """The session's clinical context in the form (``session``: an ``cardiovlm.assistant.session.Session``)."""
    clinical = session.clinical if session is not None else ClinicalContext()
    return _view(clinical, summary(clinical))


def save_context(session, *values) -> tuple:
    """Store the form's values in the session; unchanged values keep their source."""
    if session is None:
        return (*(gr.update() for _ in FIELDS), "⚠️ no session: load a study first")
    if len(values) != len(FIELDS):
        raise ValueError(f"save_context takes {len(FIELDS)} values (one per field in FIELDS), got {len(values)}")
    try:
        changes = {name: _form_value(value, kind) for (name, _, kind), value in zip(FIELDS, values)}
        if changes["troponin_value"] is None:  # a unit or assay alone is no result
            changes["troponin_unit"] = changes["troponin_assay"] = None
        clinical = session.update_clinical(changes)
    except (ClinicalContextError, ValueError) as err:
        return (*(gr.update() for _ in FIELDS), f"⚠️ {err}")
    return _view(clinical, "Saved; the next risk answer uses these values.  \n" + summary(clinical))
