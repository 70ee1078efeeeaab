"""Real-data readiness: the manifest, import into case folders, TotalSegmentator pseudo-labels."""

import json
import sys
import types
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from cardiovlm.tools.core.anatomy import STRUCTURES_BY_NAME
from cardiovlm.tools.core.case_format import LABELS_NIFTI, load_case
from cardiovlm.tools.ingest.nifti_io import write_nifti
from cardiovlm.tools.segmentation.totalseg import TotalSegmentatorUnavailable, require_totalsegmentator
from cardiovlm.training.curriculum.real_data import ManifestError, import_manifest, load_manifest, pseudo_label


def _image(path: Path) -> Path:
    hu = np.full((12, 10, 8), -100, dtype=np.int16)
    hu[3:8, 3:7, 2:6] = 300
    return write_nifti(hu, np.diag([0.7, 0.7, 1.0, 1.0]), path)


def test_manifest_import_writes_real_case_folders(tmp_path):
    _image(tmp_path / "ct" / "a.nii.gz")
    (tmp_path / "r.txt").write_text("Mild calcified plaque in the pLAD.")
    manifest = tmp_path / "studies.jsonl"
    manifest.write_text("\n".join(json.dumps(e) for e in [
        {"study_id": "a", "image": "ct/a.nii.gz", "report_path": "r.txt", "study_date": "2024-05-02"},
        {"study_id": "b", "image": "ct/a.nii.gz", "report": "No plaque in the RCA."},
    ]) + "\n")
    folders = import_manifest(manifest, tmp_path / "cases")
    case = load_case(folders[0])
    assert case.manifest.source == "real" and case.report.startswith("Mild")
    assert case.manifest.ccta.shape == (12, 10, 8) and case.findings is None


@pytest.mark.parametrize("line, message", [
    ('{"study_id": "a", "image": "missing.nii.gz"}', "does not exist"),
    ('{"study_id": "a b", "image": "x"}', "invalid manifest entry"),
    ('{"study_id": "a", "image": "ct.nii.gz", "report": "x", "report_path": "ct.nii.gz"}', "not both"),
    # The manifest is read by the curriculum's JSON-lines reader: its rules, with line numbers.
    ('{"study_id": "a", "image": ', "line 2 is not JSON"),
    ('["a", "ct.nii.gz"]', "line 2 is not a JSON object"),
])
def test_manifest_errors_name_the_line(tmp_path, line, message):
    _image(tmp_path / "ct.nii.gz")
    path = tmp_path / "m.jsonl"
    path.write_text("\n" + line + "\n")  # a blank first line: the numbers count every line
    with pytest.raises(ManifestError, match=message):
        load_manifest(path)


def test_a_missing_manifest_is_a_manifest_error_not_a_traceback(tmp_path):
    with pytest.raises(ManifestError, match="manifest .*nowhere.jsonl does not exist"):
        load_manifest(tmp_path / "nowhere.jsonl")


def test_missing_totalsegmentator_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "totalsegmentator", None)
    monkeypatch.setitem(sys.modules, "totalsegmentator.python_api", None)
    with pytest.raises(TotalSegmentatorUnavailable, match="pip install"):
        require_totalsegmentator()


def _fake_totalsegmentator(monkeypatch, calls):
    names = {"total": {1: "liver", 2: "heart", 3: "lung_upper_lobe_left"},
             "heartchambers_highres": {1: "heart_ventricle_left", 2: "heart_atrium_right"}}

    def run(input, output, ml, task, device, quiet):
        calls.append((task, ml))
        ref = nib.load(input)
        data = np.zeros(ref.shape, dtype=np.uint8)
        data[:4] = 1
        data[4:6] = 2
        return nib.Nifti1Image(data, ref.affine)

    package = types.ModuleType("totalsegmentator")
    api = types.ModuleType("totalsegmentator.python_api")
    api.totalsegmentator = run
    mapping = types.ModuleType("totalsegmentator.map_to_binary")
    mapping.class_map = names
    for name, module in (("totalsegmentator", package), ("totalsegmentator.python_api", api),
                         ("totalsegmentator.map_to_binary", mapping)):
        monkeypatch.setitem(sys.modules, name, module)


def test_missing_weights_names_the_download_command(monkeypatch, tmp_path):
    _fake_totalsegmentator(monkeypatch, [])
    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path / "empty"))
    with pytest.raises(TotalSegmentatorUnavailable, match="totalseg_download_weights"):
        pseudo_label(_image(tmp_path / "ct.nii.gz"), tmp_path / "labels.nii.gz")


def test_pseudo_labels_map_to_registry_names(monkeypatch, tmp_path):
    calls = []
    _fake_totalsegmentator(monkeypatch, calls)
    weights = tmp_path / "weights"
    (weights / "Dataset297_TotalSegmentator").mkdir(parents=True)
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(weights))
    out = tmp_path / LABELS_NIFTI
    counts = pseudo_label(_image(tmp_path / "ct.nii.gz"), out)
    assert [c[0] for c in calls] == ["total", "heartchambers_highres"] and all(c[1] for c in calls)
    # The chambers task runs last and refines "total": its LV replaces the liver where both label.
    assert set(counts) == {"lv_blood", "ra_blood"}
    labels = np.asarray(nib.load(str(out)).dataobj)
    assert labels[0, 0, 0] == STRUCTURES_BY_NAME["lv_blood"].label_id and labels[-1, 0, 0] == 0
