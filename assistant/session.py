"""One clinician's conversation: the study it belongs to, the history, and asking a question.

A ``Session`` owns its :class:`~cardiovlm.tools.quant.context.StudyContext`; tools receive it through the run
config of that session only, so two sessions never see each other's study or history. A session
can be saved to a small JSON file (the study path and the message history) and resumed, which is
how ``cardiovlm ask --session FILE`` keeps follow-ups across calls.

Every successful load is a new *study load* with its own number (``load_id``). A question belongs
to the load it was asked on: when the study changes while it runs, the question is stopped with
:class:`StudyChangedError` and its answer never reaches the new study's history. With
``study_folders`` each load writes into its own folder, so a switch never reuses or overwrites the
files of the previous study. A study loaded from DICOM keeps its image headers in memory
(``reference``), so DICOM exports reference the original series even after the files are deleted.

A study of several series (localizer, calcium scoring, CCTA) is listed in ``series``; the CCTA and
the calcium-scoring series are loaded together (``series_pick`` says which and why) and
:meth:`Session.pick_series` loads another pick. ``clinical`` is the patient's clinical context:
filled from the case and the DICOM header on each load, edited with :meth:`Session.update_clinical`,
and handed to the risk tool in the run config.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, messages_from_dict, messages_to_dict

from cardiovlm.assistant.evidence import assemble_answer
from cardiovlm.assistant.graph import build_graph, run_turn
from cardiovlm.assistant.registry import available_tools
from cardiovlm.tools.core.answer import GroundedAnswer
from cardiovlm.tools.core.errors import CardioVLMError
from cardiovlm.tools.ingest.series import NO_SERIES, SeriesInfo, SeriesPick, load_series_context
from cardiovlm.tools.quant.clinical_context import ClinicalContext
from cardiovlm.tools.quant.context import AnatomySource, StudyContext

MAX_HISTORY_MESSAGES = 60  # older turns are dropped: follow-ups only need the recent ones


class StudyChangedError(CardioVLMError):
    """Another study was loaded while a question ran: its answer would describe the previous study."""

    code = "session.study_changed"


@dataclass
class Session:
    model: BaseChatModel
    backend: str = "default"
    context: StudyContext | None = None
    study_path: str | None = None
    history: list[BaseMessage] = field(default_factory=list)
    output_dir: Path | None = None
    report_store: object | None = None  # a cardiovlm.tools.reports.api.ReportStore; None: the settings' store
    dicom_seg: bool = False  # also write answer masks as DICOM SEG (highdicom)
    study_folders: bool = False  # each study load writes into its own subfolder of output_dir
    keep_retrieved: bool = True  # keep PACS series on disk once loaded; the app deletes them (patient details)

    def __post_init__(self) -> None:
        self.tools = available_tools()
        self._pacs_tmp: Path | None = None  # where PACS series go when the session has no output folder
        self.graph = build_graph(self.model, self.tools)
        self.load_id = 0  # counts study loads; a question is fenced to the load it was asked on
        self.reference = None  # cardiovlm.tools.dicom.dicom_export.ReferenceSeries of a DICOM study, held in memory
        self.series: list[SeriesInfo] = []  # every series of the loaded study, with its kind
        self.series_pick: SeriesPick | None = None  # which were loaded as the CCTA and the calcium series
        self.clinical = ClinicalContext()  # the patient's risk factors and labs, as edited
        self._anatomy: AnatomySource = "image"
        self._pacs_source: tuple[Any, str] | None = None  # (client, study_uid) of a study retrieved whole from a PACS
        self._lock = threading.Lock()  # a load and the end of a question never interleave

    def load_study(self, path: str | Path, *, anatomy: AnatomySource = "image", ccta_series: str | None = None,
                   calcium_series: str | None = None) -> StudyContext:
        """Load a study into this session; on failure the previous study and history stay as they were.

        A study of several series loads its CCTA and its calcium-scoring series together, chosen by
        kind unless ``ccta_series`` / ``calcium_series`` (SeriesInstanceUIDs,
        ``cardiovlm.tools.ingest.series.NO_SERIES``
        for no calcium series) say otherwise; see :func:`cardiovlm.tools.ingest.series.pick_series`.

        The anatomy the tools measure on comes from the image; ``anatomy="case_labels"`` uses a case
        folder's own label map instead, for a caller that asks for it by name (label-map mode).

        Raises:
            StudyError: the study or the pick cannot be loaded (a clinician-readable message, a stable code).
        """
        from cardiovlm.tools.dicom.dicom_export import capture_reference

        context, listing, pick = load_series_context(path, anatomy=anatomy, ccta_series=ccta_series,
                                                     calcium_series=calcium_series)
        reference = capture_reference(context.study)  # read now: the files may be deleted after ingest
        self.use_context(context, study_path=str(path), reference=reference)
        with self._lock:
            self.series, self.series_pick, self._anatomy = listing, pick, anatomy
            self._pacs_source = None
        return context

    def pick_series(self, ccta_series: str | None = None, calcium_series: str | None = None) -> StudyContext:
        """Load another pick of the loaded study's series (a new study load: the conversation starts afresh;
        the clinical context, the same patient's, is kept).

        Raises:
            NoStudyLoaded: nothing is loaded.
            SeriesSourceGoneError: the study's files were deleted once loaded (an upload); load it again.
            StudyError: the pick cannot be loaded; the current study stays.
        """
        from cardiovlm.tools.ingest.study_errors import SeriesSourceGoneError
        from cardiovlm.tools.quant.context import NoStudyLoaded

        if self.context is None or self.study_path is None:
            raise NoStudyLoaded("no study is loaded: load a CT study first, then pick its series")
        clinical = self.clinical  # the same patient: the values the clinician entered stay
        if Path(self.study_path).exists():
            context = self.load_study(self.study_path, anatomy=self._anatomy, ccta_series=ccta_series,
                                      calcium_series=calcium_series)
        elif self._pacs_source is not None:
            client, study_uid = self._pacs_source
            context = self.load_from_pacs(client, study_uid, ccta_series=ccta_series, calcium_series=calcium_series)
        else:
            context = None
        if context is not None:
            with self._lock:
                self.clinical = clinical
            return context
        raise SeriesSourceGoneError(
            "the study's files were deleted from the server once it was loaded (they carry the patient's "
            "details), so another series cannot be read from them: load the study again and pick its series")

    def update_clinical(self, changes: dict) -> ClinicalContext:
        """Apply the clinician's edits to the clinical context (None or "" clears a value).

        Raises:
            ClinicalContextError: a value out of range or of the wrong type; nothing is changed.
        """
        updated = self.clinical.updated(changes)
        with self._lock:
            self.clinical = updated
        return updated

    def load_from_pacs(self, client, study_uid: str, series_uid: str | None = None, *,
                       ccta_series: str | None = None, calcium_series: str | None = None,
                       progress=None) -> StudyContext:
        """Retrieve a study (or one series of it) with ``client`` (a
        :class:`cardiovlm.tools.ingest.pacs.PacsClient`) and make it this session's study.

        Without ``series_uid`` every CT series of the study is retrieved, so its series are listed
        and the CCTA and the calcium-scoring series loaded together (``ccta_series`` /
        ``calcium_series`` pick them as in :meth:`load_study`). The files are kept in the session's
        folder unless ``keep_retrieved`` is off: then they (they carry the patient's details) are
        deleted once the study is loaded, and the image headers a DICOM SEG references stay in memory
        (``reference``); another pick retrieves them again. A refused, interrupted or too large
        transfer, or a study that does not load, leaves nothing behind and the previous study and
        history as they were.
        """
        import shutil

        from cardiovlm.tools.ingest.pacs import PacsNotFoundError

        if series_uid is not None:
            folder = client.retrieve_series(study_uid, series_uid, self._pacs_dir(), progress=progress)
        else:
            hits = client.search_series(study_uid, modality="CT")
            if not hits:
                raise PacsNotFoundError("this study holds no CT series on the PACS")
            folder = self._pacs_dir() / f"study-{study_uid}"
            shutil.rmtree(folder, ignore_errors=True)
            try:
                for hit in hits:
                    client.retrieve_series(study_uid, hit.series_uid, folder, progress=progress)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
        loaded = False
        try:
            context = self.load_study(folder, ccta_series=ccta_series, calcium_series=calcium_series)
            context.study.metadata["pacs_study_uid"] = study_uid  # where it came from, for the study's provenance
            loaded = True
            if series_uid is None:
                self._pacs_source = (client, study_uid)
            return context
        finally:
            if not (loaded and self.keep_retrieved):
                shutil.rmtree(folder, ignore_errors=True)

    def _pacs_dir(self) -> Path:
        if self.output_dir is not None:
            return self.output_dir / "pacs"
        if self._pacs_tmp is None:
            import tempfile

            self._pacs_tmp = Path(tempfile.mkdtemp(prefix="cardiovlm-pacs-"))
        return self._pacs_tmp

    def use_context(self, context: StudyContext, *, study_path: str | None = None,
                    reference=None) -> StudyContext:
        """Make an already loaded study this session's study; the conversation starts afresh.

        A question still running on the previous study is fenced off (see :meth:`ask_stream`).
        """
        with self._lock:
            self.load_id += 1
            if context.output_dir is None and self.output_dir is not None:
                context.output_dir = (self.output_dir / f"study-{self.load_id:03d}" if self.study_folders
                                      else self.output_dir)
            self.context, self.study_path, self.history = context, study_path, []
            self.reference = reference
            # a new patient: the clinical context starts from what the case and the header say
            self.clinical = ClinicalContext.for_study(context.clinical, context.study.metadata)
            self.series, self.series_pick, self._pacs_source = [], None, None
        return context

    def config(self) -> dict:
        """The run config of this session's turns: its study and report store, nobody else's."""
        from cardiovlm.tools.quant.risk import CLINICAL_CONFIG_KEY

        configurable: dict = dict(self.context.as_config()["configurable"]) if self.context else {}
        configurable[CLINICAL_CONFIG_KEY] = self.clinical
        if self.report_store is not None:
            from cardiovlm.tools.reports.api import STORE_CONFIG_KEY

            configurable[STORE_CONFIG_KEY] = self.report_store
        return {"configurable": configurable}

    def ask_stream(self, question: str) -> Iterator[BaseMessage | GroundedAnswer]:
        """Yield each planning and tool message as it happens, then the grounded answer.

        Raises:
            StudyChangedError: another study was loaded meanwhile; the rest of the question is not
                run and nothing of it enters the new study's history.
        """
        with self._lock:
            context, load_id, previous = self.context, self.load_id, list(self.history)
            config = self.config()
        human = HumanMessage(content=question)
        new: list[BaseMessage] = []
        for message in run_turn(self.graph, [*previous, human], config):
            self._fence(load_id)
            new.append(message)
            yield message
        with self._lock:
            self._fence(load_id)
            self.history = [*previous, human, *new][-MAX_HISTORY_MESSAGES:]
            _drop_leading_orphans(self.history)
        # The answer is assembled with the study it was asked on, whatever is loaded by now.
        yield assemble_answer([*previous, human], new, context=context, backend=self.backend,
                              dicom_seg=self.dicom_seg)

    def _fence(self, load_id: int) -> None:
        if self.load_id != load_id:
            raise StudyChangedError("another study was loaded while this question ran, so its answer was "
                                    "dropped; ask again about the study now loaded")

    def ask(self, question: str) -> GroundedAnswer:
        *_, answer = self.ask_stream(question)
        return answer

    # --- persistence for the CLI ---
    def save(self, path: str | Path) -> None:
        # Only the text of past turns is kept: a typed tool result (the artifact) answers its own turn,
        # and a resumed follow-up is resolved from the questions, not from earlier results.
        history = [m.model_copy(update={"artifact": None}) if getattr(m, "artifact", None) is not None else m
                   for m in self.history]
        state = {"study_path": self.study_path, "history": messages_to_dict(history),
                 "series_pick": self.series_pick.model_dump() if self.series_pick else None,
                 "clinical": self.clinical.model_dump(mode="json")}
        Path(path).write_text(json.dumps(state))

    def restore(self, path: str | Path, *, anatomy: AnatomySource = "image") -> None:
        """Resume a saved session: reload its study and history (a missing file starts afresh)."""
        path = Path(path)
        if not path.exists():
            return
        try:
            state = json.loads(path.read_text())
            history = messages_from_dict(state.get("history", []))
            clinical = ClinicalContext.model_validate(state["clinical"]) if state.get("clinical") else None
            pick = SeriesPick.model_validate(state["series_pick"]) if state.get("series_pick") else None
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"the session file {path} is not a CardioVLM session ({err})") from err
        if state.get("study_path"):
            chosen = pick if pick is not None and not pick.automatic else None  # the user's own pick is kept
            self.load_study(state["study_path"], anatomy=anatomy, ccta_series=chosen.ccta if chosen else None,
                            calcium_series=(chosen.calcium or NO_SERIES) if chosen else None)
        if clinical is not None:
            self.clinical = clinical
        self.history = history


def _drop_leading_orphans(history: list[BaseMessage]) -> None:
    """Trimming can cut a turn in half: drop messages before the first question."""
    while history and not isinstance(history[0], HumanMessage):
        history.pop(0)

