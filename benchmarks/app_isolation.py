"""Session isolation under load: logged-in users switching studies mid-question, exporting, and probing
each other's sessions and files, on a loopback server with users (gradio_client + httpx).

Each user, per round: loads study A, asks the calcium question and saves it as DICOM; starts loading
study B and, at a random moment of that load, asks again; saves (accepted only for an answer about B);
asks on B and saves. Checked and counted:

- mismatched exports: an SR after the switch references the CT series of A's export, or holds an
  Agatston score other than the one B's answer showed;
- cross-session reads: another user's session hash accepted for a question, or another user's download
  fetched by its URL (anything but HTTP 403);
- errors: any other failure (a traceback text in the chat, a refused own request, an exception).

Run: ``python benchmarks/app_isolation.py --users 16 --rounds 2`` (every user loads two demo studies per
round: on a small machine use fewer users).
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

STUDY_A, STUDY_B = "lad_calcified", "healthy"
QUESTION = "What is the calcium score?"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _texts(chat) -> list[str]:
    out = []
    for message in chat:
        content = message["content"]
        for part in content if isinstance(content, list) else [content]:
            if isinstance(part, dict) and part.get("type") == "text":
                out.append(part["text"])
    return out


def _sr(saved, cookies) -> tuple[str, float | None]:
    """(referenced CT series UID, Agatston score) of the SR among the saved files."""
    from io import BytesIO

    import httpx
    import pydicom

    sr_file = next(d for d in saved if str(d.get("path", "")).endswith("_sr.dcm"))
    ds = pydicom.dcmread(BytesIO(httpx.get(sr_file["url"], cookies=cookies, timeout=60).raise_for_status().content))
    series = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].SeriesInstanceUID
    score = None
    stack = list(ds.ContentSequence)
    while stack:
        item = stack.pop()
        stack.extend(getattr(item, "ContentSequence", []))
        if item.ValueType == "NUM" and "calcium score" in item.ConceptNameCodeSequence[0].CodeMeaning.lower():
            score = float(item.MeasuredValueSequence[0].NumericValue)
    return str(series), score


def _agatston(findings) -> float | None:
    for row in findings.get("data", []):
        if str(row[0]).lower().startswith("agatston"):
            return float(row[1])
    return None


def _user(url: str, name: str, password: str, rounds: int, peers: dict, counts: Counter, timings: list,
          scores: dict) -> None:
    import httpx
    from gradio_client import Client

    client = Client(url, auth=(name, password), verbose=False, download_files=False)
    peers[name] = (client, [])  # its client and the URLs of its downloads
    rng = random.Random(name)
    for _ in range(rounds):
        t0 = time.perf_counter()
        client.predict(STUDY_A, "axial", "cardiac", api_name="/load_demo")
        load_s = time.perf_counter() - t0
        _, _, findings_a, *_ = client.predict(QUESTION, [], api_name="/ask")
        saved_a, status = client.predict(None, api_name="/save_dicom")
        if not status.startswith("Saved"):
            counts["errors"] += 1
            continue
        series_a, _ = _sr(saved_a, client.cookies)
        # Its SR: unique bytes (fresh UIDs). Identical files (the same answer to the same question on the
        # same demo study) share one content-addressed cache path, which both users were sent.
        peers[name][1].extend(d["url"] for d in saved_a if str(d.get("path", "")).endswith("_sr.dcm"))
        # Switch to B and ask at a random moment of B's load: the question may end before the switch
        # (an answer about A), span it (dropped), or start after it (an answer about B).
        loading = client.submit(STUDY_B, "axial", "cardiac", api_name="/load_demo")
        time.sleep(rng.uniform(0.2, 1.1) * load_s)
        running = client.submit(QUESTION, [], api_name="/ask")
        loading.result()
        chat, _, findings_mid, *_ = running.result()
        texts = _texts(chat)
        if any("Traceback" in t for t in texts):
            counts["errors"] += 1
        dropped = any("answer was dropped" in t for t in texts)
        counts["questions dropped by the switch"] += dropped
        saved_mid, status_mid = client.predict(None, api_name="/save_dicom")
        chat, _, findings, _, *_ = client.predict(QUESTION, [], api_name="/ask")
        saved, status = client.predict(None, api_name="/save_dicom")
        series_b, score_b = _sr(saved, client.cookies)
        if series_b == series_a or score_b != _agatston(findings):
            counts["mismatched exports"] += 1
        if status_mid.startswith("Saved"):  # allowed only for an answer about B, exported against B
            counts["mid-switch exports"] += 1
            series_mid, score_mid = _sr(saved_mid, client.cookies)
            if series_mid == series_a or score_mid != score_b:
                counts["mismatched exports"] += 1
        scores[name] = (_agatston(findings_a), score_b)
        counts["exports checked"] += 1
        # Probe one peer: its session hash, and one of its files by URL.
        peer = next((v for n, v in list(peers.items()) if n != name and v[1]), None)
        if peer is not None:
            spy = Client(url, auth=(name, password), verbose=False, download_files=False)
            spy.session_hash = peer[0].session_hash
            try:
                spy.predict(QUESTION, [], api_name="/ask")
                counts["cross-session reads"] += 1
                print(f"{name} used the session of another user")
            except Exception:  # noqa: BLE001 (refused: what should happen)
                pass
            if httpx.get(peer[1][0], cookies=client.cookies, timeout=60).status_code != 403:
                counts["cross-session reads"] += 1
                print(f"{name} fetched a file of another user")
            counts["probes"] += 2
        timings.append(time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    from ui.server import launch

    users = {f"user{i}": f"pw-{i}-benchmark" for i in range(args.users)}
    users_file = Path(tempfile.mkdtemp()) / "users.txt"
    users_file.write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
    app, url = launch("127.0.0.1", _free_port(), users_file=str(users_file), block=False)
    counts: Counter = Counter()
    timings: list[float] = []
    peers: dict = {}
    scores: dict = {}
    t0 = time.perf_counter()

    def run(item):
        try:
            _user(url, *item, args.rounds, peers, counts, timings, scores)
        except Exception as err:  # noqa: BLE001 (counted and shown, the benchmark goes on)
            counts["errors"] += 1
            import traceback

            print(f"{item[0]}: {type(err).__name__}: {err}", traceback.format_exc(limit=-2))

    with ThreadPoolExecutor(args.users) as pool:
        list(pool.map(run, users.items()))
    app.close()
    print(f"{args.users} users x {args.rounds} round(s) in {time.perf_counter() - t0:.0f} s; "
          f"round median {statistics.median(timings) if timings else float('nan'):.1f} s")
    print(f"Agatston score shown for {STUDY_A} / {STUDY_B}: {sorted(set(scores.values()))}")
    for key in ("exports checked", "mismatched exports", "mid-switch exports", "questions dropped by the switch",
                "probes", "cross-session reads", "errors"):
        print(f"{key:>32}: {counts[key]}")


if __name__ == "__main__":
    main()
