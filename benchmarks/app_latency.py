"""App latency on the CPU: launch to ready, and question to final answer for 1 and 8 users.

Users are simulated with gradio_client on loopback, each with its own session (its own study
load), all asking the stent example on the LAD-stenosis demo case at the same time. The queue's
concurrency limit is the server default (2), so with 8 users most requests wait their turn: the
table shows both the median and the slowest answer. Run: ``python benchmarks/app_latency.py``.
"""

from __future__ import annotations

import statistics
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, for tests/
from tests.loopback import free_port

QUESTION = "Will a 20 mm stent fully cover the proximal LAD lesion?"
CASE = "lad_stenosis"



def _one_user(url: str) -> tuple[float, float, bool]:
    from gradio_client import Client

    client = Client(url, verbose=False)
    t0 = time.perf_counter()
    client.predict(CASE, "axial", "cardiac", api_name="/load_demo")
    t1 = time.perf_counter()
    chat, *_ = client.predict(QUESTION, [], api_name="/ask")
    t2 = time.perf_counter()
    texts = [part.get("text", "") for message in chat for part in message["content"] if isinstance(part, dict)]
    return t1 - t0, t2 - t1, any(t.startswith("Yes. A 20 mm stent covers") for t in texts)


def main() -> None:
    t0 = time.perf_counter()
    from cardiovlm.ui.server import launch

    app, url = launch("127.0.0.1", free_port(), block=False)
    urllib.request.urlopen(url, timeout=60).read()
    ready = time.perf_counter() - t0
    rows = [("launch to ready (imports, app build, first page)", f"{ready:.1f} s", "")]
    for users in (1, 8):
        with ThreadPoolExecutor(users) as pool:
            results = list(pool.map(lambda _: _one_user(url), range(users)))
        loads = [r[0] for r in results]
        answers = [r[1] for r in results]
        ok = sum(r[2] for r in results)
        rows.append((f"{users} user(s): load demo study", f"median {statistics.median(loads):.2f} s",
                     f"max {max(loads):.2f} s"))
        rows.append((f"{users} user(s): stent question to final answer", f"median {statistics.median(answers):.2f} s",
                     f"max {max(answers):.2f} s, {ok}/{users} correct"))
    app.close()
    width = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(width)}  value            spread")
    for name, value, spread in rows:
        print(f"{name.ljust(width)}  {value.ljust(16)} {spread}")


if __name__ == "__main__":
    main()
