"""The served app through ``gradio_client`` on 127.0.0.1: one prediction per tab, readable
errors, and a bounded burst of concurrent requests (all succeed, memory stays flat)."""
from __future__ import annotations

import gc
import threading
from pathlib import Path

import pytest

from mambakit.apps.tabs import audio

pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "apps" / "examples"
IMAGE = EXAMPLES / "vision" / "sneaker-test00009.png"
CLIP = EXAMPLES / "audio" / "7_lucas_2.wav"
DNA = next((EXAMPLES / "dna").glob("*coding_plus*.fasta"))
SERIES = EXAMPLES / "timeseries" / "etth1-test-2017-11.csv"
GRAPH = EXAMPLES / "graphs" / "pattern-test-0700.json"


def labels_of(result: dict) -> list[tuple[str, float]]:
    return [(c["label"], c["confidence"]) for c in result["confidences"]]


def test_server_listens_on_loopback_only(server):
    assert server.startswith("http://127.0.0.1:")


def test_one_prediction_per_tab(client, shipped_vision):
    label, seen, details = client.predict(handle_file(str(IMAGE)), "auto", api_name="/classify_image")
    top = labels_of(label)
    assert len(top) == 5 and [p for _, p in top] == sorted((p for _, p in top), reverse=True)
    assert Path(seen).is_file() and "not inverted" in details
    if shipped_vision:
        assert label["label"] == "Sneaker"

    label, plot, details = client.predict(handle_file(str(CLIP)), api_name="/classify_audio")
    assert label["label"] == "7 (seven)" and plot["type"] == "matplotlib"
    assert "resampled from 8000 Hz to 16000 Hz" in details

    label, plot, track, details = client.predict(DNA.read_text(), None, "strand", api_name="/classify_dna")
    assert {c for c, _ in labels_of(label)} == {"minus strand (-)", "plus strand (+)"}
    assert len(track) == 200 and all(-1.0 <= t["class_or_confidence"] <= 1.0 for t in track)

    plot, details = client.predict(handle_file(str(SERIES)), 96, api_name="/forecast")
    assert plot["type"] == "matplotlib" and "Against the 96 held-out rows" in details

    plot, details = client.predict(handle_file(str(GRAPH)), api_name="/score_graph")
    assert plot["type"] == "matplotlib" and "weighted accuracy" in details


def test_model_cards_through_the_api(client):
    for tab in ("audio", "dna", "timeseries"):
        card = client.predict(api_name=f"/card_{tab}")
        assert "**test metric**" in card and "ms for one" in card and "parameters" in card


@pytest.mark.parametrize("endpoint,make,expected", [
    ("/classify_image", lambda d: (handle_file(str(_write(d / "notes.txt", "hi"))), "auto"),
     "'notes.txt' is not a supported image type (.txt)"),
    ("/classify_audio", lambda d: (handle_file(str(_sparse(d / "big.wav", 11 * 2 ** 20))),),
     "'big.wav' is 11 MB: too large, audio files are limited to 10 MB here"),
    ("/classify_dna", lambda d: ("ACGTACGTXXACGT", None, "coding"),
     "sequence: invalid DNA character 'X' at position 8 (2 invalid in total); expected A, C, G, T, N"),
    ("/forecast", lambda d: (handle_file(str(_write(d / "words.csv", "date,name\n2020-01-01,x\n"))), 96),
     "'words.csv' has no numeric columns (columns: date, name); expected one column per variable with numbers"),
])
def test_bad_input_gets_a_readable_message(client, tmp_path, endpoint, make, expected):
    with pytest.raises(AppError) as info:
        client.predict(*make(tmp_path), api_name=endpoint)
    message = str(info.value)
    assert message.startswith(expected)
    assert "Traceback" not in message and "/tmp/" not in message


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as fh:
        fh.truncate(size)
    return path


def _rss_mb() -> float:
    """Resident memory of this process (the server runs in one of its threads)."""
    try:
        import psutil
    except ImportError:
        status = Path("/proc/self/status")
        if not status.is_file():
            pytest.skip("measuring memory needs psutil (pip install psutil) or /proc")
        kb = next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmRSS:"))
        return kb / 1024
    return psutil.Process().memory_info().rss / 2 ** 20


def test_concurrent_requests_all_succeed_and_memory_stays_flat(server):
    """24 requests (all four tabs) from 6 threads at once, after a warm-up burst of the same
    size (lazy loads, caches, worker threads): all succeed, and the server's memory (this
    process: the server runs in a thread here) does not grow."""
    jobs = [("/classify_image", lambda: (handle_file(str(IMAGE)), "auto")),
            ("/classify_audio", lambda: (handle_file(str(CLIP)),)),
            ("/classify_dna", lambda: (DNA.read_text(), None, "coding")),
            ("/forecast", lambda: (handle_file(str(SERIES)), 96))]
    clients = [Client(server, verbose=False) for _ in range(6)]

    import httpx

    def burst(per_thread: int) -> list:
        results, errors, dropped = [], [], []

        def worker(i: int) -> None:
            for k in range(per_thread):
                name, args = jobs[(i + k) % len(jobs)]
                for attempt in range(2):
                    try:
                        results.append((name, clients[i].predict(*args(), api_name=name)))
                        break
                    except httpx.RemoteProtocolError as err:
                        # Seen once in ~10 clean-clone runs: the HTTP layer dropped a connection
                        # under the burst. One retry is allowed, and only once per burst (below).
                        dropped.append((name, repr(err)))
                        if attempt:
                            errors.append((name, repr(err)))
                    except Exception as err:  # noqa: BLE001 - collected and reported below
                        errors.append((name, repr(err)))
                        break

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        assert len(dropped) <= 1, dropped
        assert len(results) == 6 * per_thread
        return results

    burst(4)
    gc.collect()
    before = _rss_mb()
    results = burst(4)
    gc.collect()
    growth = _rss_mb() - before
    print(f"server RSS {before:.0f} MB after warm-up, growth over 24 concurrent requests: {growth:.1f} MB")
    assert growth < 50, f"server memory grew by {growth:.1f} MB over 24 requests"
    audio_labels = {r[0]["label"] for name, r in results if name == "/classify_audio"}
    assert audio_labels == {"7 (seven)"} and audio.MODEL._model is not None
