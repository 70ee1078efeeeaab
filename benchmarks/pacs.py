"""Benchmark: retrieving a demo study from a local Orthanc over DICOMweb against loading its files.

Writes each demo phantom (``tools/demo_cases/<case>/ccta.nii.gz``) as a CT series, starts Debian's
Orthanc with the DICOMweb plugin on a loopback port (``tests.orthanc_local``), uploads the series
(STOW-RS), then times, in the same run and on the same files:

* disk: ``load_study(folder)`` on the written series (page cache warm), and
* PACS: ``PacsClient.load_series``: QIDO lookup, WADO-RS multipart stream written instance by
  instance to a fresh folder, then the same ``load_study``.

The ratio PACS / disk is what a clinician pays for the network path on a loopback connection (a
lower bound for a hospital network). Time is the best of ``--repeat`` runs (``time.perf_counter``).

Usage::

    python benchmarks/pacs.py [--cases lad_stenosis healthy] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from cardiovlm.tools.core.settings import get_settings
from cardiovlm.tools.dicom.dicom_write import write_ct_series
from cardiovlm.tools.ingest.pacs import PacsClient
from cardiovlm.tools.ingest.study import load_study

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root
from tests.orthanc_local import LocalOrthanc


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["lad_stenosis", "healthy"])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="cardiovlm-bench-pacs-") as tmp:
        tmp = Path(tmp)
        with LocalOrthanc(tmp / "orthanc", user="bench", password="bench") as server:
            client = PacsClient(server.dicomweb_url, auth="basic", username="bench", password="bench")
            for case in args.cases:
                study = load_study(get_settings().demo_cases_dir / case / "ccta.nii.gz")
                folder = tmp / "files" / case
                paths = write_ct_series(study.hu, study.affine, folder, series_description=case, uid_seed=case,
                                        patient_id=f"BENCH-{case}")
                client.send_files([folder])
                hit = client.search_studies(patient_id=f"BENCH-{case}")[0]
                series = client.search_series(hit.study_uid)[0]
                size_mb = sum(p.stat().st_size for p in paths) / 1024**2

                def from_pacs(study_uid=hit.study_uid, series_uid=series.series_uid):
                    dest = tmp / "retrieved"
                    shutil.rmtree(dest, ignore_errors=True)
                    return client.load_series(study_uid, series_uid, dest)

                disk = best_of(lambda folder=folder: load_study(folder), args.repeat)
                pacs = best_of(from_pacs, args.repeat)
                rows.append((case, "x".join(map(str, study.shape)), len(paths), size_mb, disk, pacs))

    print(f"{'case':<14} {'shape':<12} {'images':>6} {'MB':>6} {'disk s':>8} {'PACS s':>8} {'PACS/disk':>9}")
    for case, shape, n, mb, disk, pacs in rows:
        print(f"{case:<14} {shape:<12} {n:>6} {mb:>6.1f} {disk:>8.3f} {pacs:>8.3f} {pacs / disk:>9.2f}")


if __name__ == "__main__":
    main()
