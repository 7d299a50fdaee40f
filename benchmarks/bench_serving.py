"""The Gradio Space under a bounded load: `/verify` requests from 1, 4 and 8 concurrent `gradio_client` clients, with
10 % bad uploads, against `space/app.py` served on 127.0.0.1 (nothing else is contacted).

    python benchmarks/bench_serving.py [--model DIR] [--requests 300] [--clients 1 4 8] [--bad-fraction 0.1] \
        [--seconds 3] [--threads N] [--markdown-out table.md]

Without `--model`, a `tiny` preset model with random weights is saved to a temporary folder (the serving path, not
the network, is what is measured). Each level sends `--requests` verification requests: good ones are pairs of real
wav files (16 kHz mono and 44.1 kHz stereo, `--seconds` long); bad ones rotate through an empty wav, a zero-byte
file, a file that is not audio and a too-short clip. Each client is a `gradio_client.Client` (its own session) that
uploads both files and calls `/verify`, as a script would.

Per level: throughput (all requests / wall time), p50/p95/p99 latency of the good requests, good requests that failed
(must be 0), bad requests that were not refused (must be 0), and the server's RSS after the level. The server's RSS
after a warm-up is the baseline; it must not grow by more than 10 %. After all levels one more good request must be
answered. The script exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from common import _proc_kib, load_note, machine_caption, markdown_table, publish

from wavlmrawnet import WavLMRawNetConfig, WavLMRawNetForXVector

APP = Path(__file__).resolve().parents[1] / "space" / "app.py"
MAX_RSS_GROWTH = 0.10


def voice(seconds: float, rate: int, seed: int, channels: int = 1) -> np.ndarray:
    """A harmonic tone with vibrato, syllables and noise (as the tests' `voice_like`): passes the no-speech check."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum((100 + 80 * rng.random()) * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / rate
    syllables = 0.1 + 0.9 * np.sin(np.pi * 4 * t) ** 2
    audio = syllables * sum(np.sin(k * phase) / k for k in range(1, 12)) * 0.2 + 0.01 * rng.standard_normal(t.size)
    if channels > 1:
        audio = np.stack([audio * (1 - 0.2 * c) for c in range(channels)], axis=1)
    return audio.astype(np.float32)


def write_inputs(folder: Path, seconds: float) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Good pairs (same and different voices, mono 16 kHz and stereo 44.1 kHz) and bad pairs (second side bad)."""
    files = {}
    for name, rate, seed, channels in (("a16", 16000, 1, 1), ("b16", 16000, 2, 1), ("a44", 44100, 1, 2)):
        files[name] = str(folder / f"{name}.wav")
        sf.write(files[name], voice(seconds, rate, seed, channels), rate, subtype="PCM_16")
    files["short"] = str(folder / "short.wav")
    sf.write(files["short"], voice(0.05, 16000, 3), 16000, subtype="PCM_16")
    files["empty"] = str(folder / "empty.wav")
    sf.write(files["empty"], np.zeros(0, dtype=np.float32), 16000)
    (folder / "zero.wav").write_bytes(b"")
    (folder / "garbage.wav").write_bytes(os.urandom(2048))
    files["zero"], files["garbage"] = str(folder / "zero.wav"), str(folder / "garbage.wav")
    good = [(files["a16"], files["a16"]), (files["a16"], files["b16"]), (files["a44"], files["b16"])]
    bad = [(files["a16"], files[name]) for name in ("empty", "zero", "garbage", "short")]
    return good, bad


def save_tiny_model(folder: Path) -> Path:
    torch.manual_seed(0)
    WavLMRawNetForXVector(WavLMRawNetConfig.from_preset("tiny", num_labels=5)).save_pretrained(folder)
    return folder


def start_server(model: str, log_path: Path, threads: int | None) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    log = open(log_path, "w")
    command = [sys.executable, str(APP), "--model", model, "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"space/app.py exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "config", timeout=5):
                return server, url
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError("space/app.py did not answer within 300 s")


def server_rss(server: subprocess.Popen) -> int:
    return 1024 * _proc_kib(f"/proc/{server.pid}/status", "VmRSS")


def run_level(url: str, clients: int, jobs: list[tuple[bool, tuple[str, str]]]) -> dict:
    """Sends `jobs` (is_good, pair) from `clients` threads, each with its own Client; returns the counts and times."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    sessions = [Client(url, verbose=False) for _ in range(clients)]
    lock, next_job = threading.Lock(), iter(jobs)
    latencies, good_failures, bad_accepted, bad_refused = [], [], 0, 0

    def work(client: Client) -> None:
        nonlocal bad_accepted, bad_refused
        while True:
            with lock:
                job = next(next_job, None)
            if job is None:
                return
            is_good, (first, second) = job
            start = time.perf_counter()
            try:
                _, result = client.predict(handle_file(first), handle_file(second), api_name="/verify")
                ok = isinstance(result, dict) and np.isfinite(result["score"])
                error = None if ok else f"bad answer {result!r}"
            except AppError as refused:
                ok, error = False, f"refused: {refused}"
            except Exception as failure:  # a transport error or a crash: a failed request
                ok, error = False, f"{type(failure).__name__}: {failure}"
            elapsed = time.perf_counter() - start
            with lock:
                if is_good:
                    latencies.append(elapsed)
                    if not ok:
                        good_failures.append(error)
                elif ok:
                    bad_accepted += 1
                else:
                    bad_refused += 1

    threads = [threading.Thread(target=work, args=(session,)) for session in sessions]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    for session in sessions:
        session.close()
    return {
        "wall": wall,
        "latencies": np.array(latencies),
        "good_failures": good_failures,
        "bad_accepted": bad_accepted,
        "bad_refused": bad_refused,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model folder (default: a tiny random-init model in a temporary folder)")
    parser.add_argument("--requests", type=int, default=300, help="requests per concurrency level")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8], help="concurrency levels")
    parser.add_argument("--bad-fraction", type=float, default=0.1, help="share of bad uploads")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of the good recordings")
    parser.add_argument("--warmup", type=int, default=20, help="requests before the baseline RSS is read")
    parser.add_argument("--threads", type=int, help="the server's OMP_NUM_THREADS (default: torch's choice)")
    parser.add_argument("--markdown-out")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]

    with tempfile.TemporaryDirectory(prefix="bench_serving_") as tmp:
        tmp = Path(tmp)
        model = args.model or str(save_tiny_model(tmp / "tiny_model"))
        good, bad = write_inputs(tmp, args.seconds)
        server, url = start_server(model, tmp / "server.log", args.threads)
        try:
            rng = np.random.default_rng(0)
            n_bad = int(round(args.requests * args.bad_fraction))
            kinds = np.array([False] * n_bad + [True] * (args.requests - n_bad))
            warmup = [(True, good[i % len(good)]) for i in range(args.warmup)] + [(False, pair) for pair in bad]
            run_level(url, 2, warmup)
            rss_start = server_rss(server)
            rows, failures, levels = [], [], []
            for clients in args.clients:
                order = rng.permutation(kinds)
                jobs = [(bool(k), good[i % len(good)] if k else bad[i % len(bad)]) for i, k in enumerate(order)]
                level = run_level(url, clients, jobs)
                rss = server_rss(server)
                levels.append((clients, level, rss))
                p50, p95, p99 = np.percentile(level["latencies"], [50, 95, 99]) * 1000
                rows.append(
                    [
                        str(clients),
                        f"{args.requests} ({n_bad} bad)",
                        f"{args.requests / level['wall']:.1f}",
                        f"{p50:.0f} / {p95:.0f} / {p99:.0f}",
                        str(len(level["good_failures"])),
                        f"{level['bad_refused']} / {n_bad}",
                        f"{rss / 2**20:.0f}",
                    ]
                )
                failures += [f"{clients} clients: good request failed: {e}" for e in level["good_failures"][:5]]
                if level["bad_accepted"]:
                    failures.append(f"{clients} clients: {level['bad_accepted']} bad uploads were answered as good")
            alive = run_level(url, 1, [(True, good[1])])
            rss_end = server_rss(server)
        finally:
            server.terminate()
            server.wait(timeout=30)

    growth = rss_end / rss_start - 1
    if alive["good_failures"]:
        failures.append(f"the server did not answer after the load: {alive['good_failures']}")
    if growth > MAX_RSS_GROWTH:
        failures.append(f"server RSS grew {growth:.1%} (limit {MAX_RSS_GROWTH:.0%})")
    header = ["clients", "requests", "req/s", "good p50 / p95 / p99 (ms)", "good failed", "bad refused", "RSS (MiB)"]
    model_note = f"`{Path(model).name}`" if args.model else "`tiny` preset, random weights"
    report = "\n".join(
        [
            f"{machine_caption(args.threads)}. `space/app.py` on 127.0.0.1, {model_note}, `/verify` through "
            f"`gradio_client` (each client its own session; upload + call), {args.seconds:g} s recordings, "
            f"{args.bad_fraction:.0%} bad uploads (empty wav, zero bytes, not audio, too short). "
            f"{load_note(load_before)}.",
            "",
            markdown_table(header, rows),
            "",
            f"Server RSS after warm-up {rss_start / 2**20:.0f} MiB, after all levels {rss_end / 2**20:.0f} MiB"
            f" ({growth:+.1%}); answered a good request after the load: {'NO' if alive['good_failures'] else 'yes'}.",
        ]
    )
    publish(report, args.markdown_out)
    for failure in failures:
        print("CHECK FAILED:", failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
