"""The patient's clinical context as a session holds it: every value optional, editable, with its source.

A case folder's ``clinical.json`` (``cardiovlm.tools.core.case_format.ClinicalContext``) is complete by schema;
a real study brings at most the patient's age and sex in its DICOM header, and the clinician types
the rest. :class:`ClinicalContext` therefore allows every value to be unknown, records where each
known value came from ("case clinical file", "DICOM header", "entered by the user"), and says which
values a score still needs (:meth:`ClinicalContext.missing`), so a risk answer can name the values
it used and the ones it lacked.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cardiovlm.tools.core import case_format as cf
from cardiovlm.tools.core.errors import CardioVLMError

Race = Literal["white", "chinese", "african_american", "hispanic"]
TroponinUnit = Literal["pg/mL", "ng/L", "ng/mL"]
Source = Literal["case clinical file", "DICOM header", "entered by the user", "given in the question"]

# The values the MESA 10-year CHD score with CAC needs (McClelland et al., JACC 2015).
MESA_FIELDS = ("age", "sex", "race", "systolic_bp_mmhg", "total_cholesterol_mg_dl", "hdl_cholesterol_mg_dl",
               "smoker", "diabetes", "hypertension_treatment", "lipid_lowering", "family_history_mi")
FIELD_NAMES = {
    "age": "age", "sex": "sex", "race": "race", "systolic_bp_mmhg": "systolic blood pressure",
    "total_cholesterol_mg_dl": "total cholesterol", "hdl_cholesterol_mg_dl": "HDL cholesterol",
    "smoker": "current smoking", "diabetes": "diabetes", "hypertension_treatment": "blood-pressure medication",
    "lipid_lowering": "lipid-lowering medication", "family_history_mi": "family history of heart attack",
    "troponin_value": "troponin", "troponin_unit": "troponin unit", "troponin_assay": "troponin assay",
}
UNITS = {"age": "years", "systolic_bp_mmhg": "mmHg", "total_cholesterol_mg_dl": "mg/dL",
         "hdl_cholesterol_mg_dl": "mg/dL"}


class ClinicalContextError(CardioVLMError):
    """A clinical value is not valid (out of range, of the wrong kind, a value without its unit, or a name
    that is not a clinical value); the message names the value and what is allowed. Nothing is changed."""

    code = "clinical.invalid"


class ClinicalContext(BaseModel):
    """Risk factors and labs of the loaded patient; None means not known."""

    model_config = ConfigDict(validate_assignment=True, extra="forbid")

    age: int | None = Field(None, ge=18, le=110, description="years")
    sex: Literal["male", "female"] | None = None
    race: Race | None = Field(None, description="the four groups the MESA score was derived for")
    systolic_bp_mmhg: float | None = Field(None, ge=60, le=280)
    total_cholesterol_mg_dl: float | None = Field(None, ge=50, le=600)
    hdl_cholesterol_mg_dl: float | None = Field(None, ge=5, le=200)
    smoker: bool | None = Field(None, description="current smoker")
    diabetes: bool | None = None
    hypertension_treatment: bool | None = Field(None, description="takes blood-pressure medication")
    lipid_lowering: bool | None = Field(None, description="takes lipid-lowering medication (e.g. a statin)")
    family_history_mi: bool | None = Field(None, description="heart attack in a parent, sibling or child")
    troponin_value: float | None = Field(None, ge=0, description="hs-cTnI result")
    troponin_unit: TroponinUnit | None = None
    troponin_assay: str | None = Field(None, description="hs-cTnI assay; its 99th-percentile limits decide")
    sources: dict[str, Source] = Field(default_factory=dict, description="value name -> where it came from")

    # --- where the values come from ---
    @classmethod
    def from_case(cls, clinical: cf.ClinicalContext | None) -> ClinicalContext:
        """A case folder's complete clinical file."""
        if clinical is None:
            return cls()
        values = clinical.model_dump()
        known = {k: v for k, v in values.items() if v is not None}
        return cls(**known, sources={k: "case clinical file" for k in known})

    @classmethod
    def for_study(cls, clinical: cf.ClinicalContext | None, metadata: dict | None) -> ClinicalContext:
        """The case's clinical file, with the DICOM header's age and sex where the file has none."""
        out = cls.from_case(clinical)
        metadata = metadata or {}
        header = {"age": metadata.get("patient_age_years"), "sex": metadata.get("patient_sex")}
        for name, value in header.items():
            if getattr(out, name) is None and value is not None:
                try:
                    out = out.updated({name: value}, source="DICOM header")
                except ClinicalContextError:
                    continue  # an age outside the range a score accepts stays unknown
        return out

    def updated(self, changes: dict, *, source: Source = "entered by the user") -> ClinicalContext:
        """A copy with ``changes`` applied (None or "" clears a value); each changed value gets ``source``.

        Raises:
            ClinicalContextError: a value out of range or of the wrong type, or an unknown name.
        """
        values = self.model_dump(exclude={"sources"})
        sources = dict(self.sources)
        for name, value in changes.items():
            if name not in values:
                raise ClinicalContextError(f"'{name}' is not a clinical value; known: {', '.join(FIELD_NAMES)}")
            value = None if isinstance(value, str) and not value.strip() else value
            values[name] = value
            if value is None:
                sources.pop(name, None)
            elif value != getattr(self, name):
                sources[name] = source
            # an unchanged value keeps its source (a form sends every field back)
        try:
            out = ClinicalContext(**values, sources=sources)
        except ValidationError as err:
            first = err.errors()[0]
            name = str(first["loc"][0]) if first.get("loc") else "a value"
            raise ClinicalContextError(
                f"{FIELD_NAMES.get(name, name)}: {first['msg'].lower()} (got {first.get('input')!r})") from None
        if out.troponin_value is not None and out.troponin_unit is None:
            raise ClinicalContextError("troponin: a value needs its unit (ng/L, pg/mL or ng/mL)")
        return out

    # --- what a score can use ---
    def missing(self, fields: tuple[str, ...] = MESA_FIELDS) -> list[str]:
        """Readable names of the values in ``fields`` that are not known."""
        return [FIELD_NAMES[f] for f in fields if getattr(self, f) is None]

    def known(self) -> dict[str, object]:
        return {k: v for k, v in self.model_dump(exclude={"sources"}).items() if v is not None}

    def shown(self, name: str) -> str:
        """'age 67 years (case clinical file)': a value as an answer names it."""
        value = getattr(self, name)
        if isinstance(value, bool):
            text = f"{FIELD_NAMES[name]}: {'yes' if value else 'no'}"
        elif name == "race":
            text = f"race {str(value).replace('_', ' ')}"
        elif name == "sex":
            text = str(value)
        else:
            text = f"{FIELD_NAMES[name]} {value:g}" if isinstance(value, float) else f"{FIELD_NAMES[name]} {value}"
            text += f" {UNITS[name]}" if name in UNITS else ""
        source = self.sources.get(name)
        return f"{text} ({source})" if source else text

    def is_empty(self) -> bool:
        return not self.known()
