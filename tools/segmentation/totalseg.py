"""TotalSegmentator, run one way: where its weights are, whether it can run offline, and its label
map in ``cardiovlm.tools.core.anatomy`` ids.

Real-data pseudo-labelling (``cardiovlm.training.curriculum.real_data``) and the assistant's
``totalsegmentator_anatomy`` tool both run it through here, so they look for the weights in the same
place and give the same reason when it cannot run. Nothing here downloads weights: TotalSegmentator
fetches missing weights from the internet by itself, so it is only started once they are present.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from cardiovlm.tools.core.anatomy import STRUCTURES_BY_NAME
from cardiovlm.tools.core.settings import external_environment, set_library_environment
from cardiovlm.tools.ingest.study_errors import StudyError

# TotalSegmentator class names -> cardiovlm.tools.core.anatomy structure names.
TOTALSEG_TO_REGISTRY: dict[str, str] = {
    "heart_myocardium": "lv_myocardium", "heart_atrium_left": "la_blood", "heart_ventricle_left": "lv_blood",
    "heart_atrium_right": "ra_blood", "heart_ventricle_right": "rv_blood", "aorta": "aorta",
    "pulmonary_artery": "pulmonary_artery", "sternum": "sternum", "liver": "liver",
    "lung_upper_lobe_left": "lung_left", "lung_lower_lobe_left": "lung_left",
    "lung_upper_lobe_right": "lung_right", "lung_middle_lobe_right": "lung_right",
    "lung_lower_lobe_right": "lung_right",
    **{f"vertebrae_T{i}": "spine" for i in range(1, 13)},
}
NOT_INSTALLED = ("TotalSegmentator is not installed: pip install 'cardiovlm[totalseg]' "
                 "(or pip install totalsegmentator)")


class TotalSegmentatorUnavailable(StudyError):
    """TotalSegmentator or its weights are not installed; the message says how to install them."""

    code = "totalsegmentator.unavailable"


def weights_dir() -> Path:
    """Where TotalSegmentator itself looks for its weights: ``TOTALSEG_WEIGHTS_PATH``, else
    ``TOTALSEG_HOME_DIR/nnunet/results`` (home ``~/.totalsegmentator``), read by cardiovlm.tools.core.settings as
    TotalSegmentator reads them, so the check and the run agree."""
    return external_environment().totalseg_weights_dir


def weights_installed() -> bool:
    folder = weights_dir()
    return folder.is_dir() and any(folder.iterdir())


def _weights_missing() -> str:
    return (f"TotalSegmentator weights are not installed in {weights_dir()}: run `totalseg_download_weights "
            "-t total` (and `-t heartchambers_highres` with a licence) on a machine with internet, then copy "
            "the folder here or point TOTALSEG_HOME_DIR / TOTALSEG_WEIGHTS_PATH at it")


def unavailable_reason() -> str | None:
    """Why TotalSegmentator cannot run offline here, or None when it can. Cheap enough to decide whether
    a tool is offered: the package is found, not imported (importing it loads torch)."""
    try:
        installed = importlib.util.find_spec("totalsegmentator") is not None
    except ValueError:  # a module in sys.modules without a spec
        installed = False
    if not installed:
        return NOT_INSTALLED
    return None if weights_installed() else _weights_missing()


def require_totalsegmentator() -> None:
    """Raise :class:`TotalSegmentatorUnavailable`, with the reason :func:`unavailable_reason` gives,
    unless TotalSegmentator's API imports and its weights are installed (the check before a run)."""
    try:
        import totalsegmentator.python_api  # noqa: F401
    except ImportError as err:
        raise TotalSegmentatorUnavailable(NOT_INSTALLED) from err
    if not weights_installed():
        raise TotalSegmentatorUnavailable(_weights_missing())


def label_with_totalsegmentator(image: str | Path, out_path: str | Path, *, tasks: tuple[str, ...],
                                device: str = "cpu") -> dict[str, int]:
    """Label a CT NIfTI with TotalSegmentator, mapped to ``cardiovlm.tools.core.anatomy`` ids, and write the label map
    on the image's own grid and affine. Later tasks overwrite earlier ones where they overlap.

    Returns:
        voxels per registry structure found.

    Raises:
        TotalSegmentatorUnavailable: TotalSegmentator or its weights are missing.
        StudyError: a task returned a label map of another shape than the image.
    """
    set_library_environment({"TOTALSEG_DISABLE_USAGE_STATS": "1"})  # no telemetry from hospital machines
    require_totalsegmentator()
    import nibabel as nib
    from totalsegmentator.map_to_binary import class_map
    from totalsegmentator.python_api import totalsegmentator

    reference = nib.load(str(image))
    labels = np.zeros(reference.shape, dtype=np.uint8)
    for task in tasks:
        result = totalsegmentator(str(image), None, ml=True, task=task, device=device, quiet=True)
        data = np.asarray(result.dataobj).astype(np.int32)
        if data.shape != labels.shape:
            raise StudyError(f"TotalSegmentator task {task} returned shape {data.shape}, expected {labels.shape}")
        for ts_id, ts_name in class_map[task].items():
            if ts_name in TOTALSEG_TO_REGISTRY:
                labels[data == int(ts_id)] = STRUCTURES_BY_NAME[TOTALSEG_TO_REGISTRY[ts_name]].label_id
    # The image's own voxel order and affine, so the label map reads back aligned with it.
    out = nib.Nifti1Image(labels, reference.affine)
    out.set_sform(reference.affine, code=1)
    out.set_qform(reference.affine, code=1)
    nib.save(out, str(out_path))
    names = {STRUCTURES_BY_NAME[n].label_id: n for n in set(TOTALSEG_TO_REGISTRY.values())}
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    return {names[int(i)]: int(c) for i, c in zip(ids, counts)}
