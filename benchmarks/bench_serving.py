"""The Gradio Space under a bounded load: `/verify` requests from 1, 4 and 8 concurrent `gradio_client` clients, with
10 % bad uploads, against `space/app.py` served on 127.0.0.1 (nothing else is contacted). With `--hostile`, each
level runs twice, clean and hostile, and the Inference Endpoints handler (served over HTTP as Endpoints serves it)
gets the same mixes.

    python -m benchmarks.bench_serving [--model DIR] [--requests 300] [--clients 1 4 8] [--bad-fraction 0.1] \
        [--seconds 3] [--threads N] [--hostile] [--hostile-fraction 0.1] [--markdown-out table.md]

The hostile mix adds, on top of the bad uploads, `--hostile-fraction` of: a FLAC bomb (599 s of silence at 192 kHz x
8 channels, 1 MB on disk, 920 million samples decoded), a 655,350 Hz file, silence, a DC offset, a 440 Hz tone and an
upload over the Space's `--max-file-size` (the bench serves it with 5 MB and uploads 6 MB); the handler's hostile mix
also sends `chunk_seconds` 0 and 1e-5 with good audio. All must be refused; the good requests must all be answered
with p99 within 2x the clean run's, and the server's RSS must stay flat.

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
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from benchmarks.common import _proc_kib, load_note, machine_caption, markdown_table, publish
from wavlmrawnet import WavLMRawNetConfig, WavLMRawNetForXVector

APP = Path(__file__).resolve().parents[1] / "space" / "app.py"
MAX_RSS_GROWTH = 0.10
MAX_P99_RATIO = 2.0  # hostile p99 of good requests / clean p99
BENCH_MAX_FILE_SIZE = "5mb"


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


def write_hostile(folder: Path, good_file: str) -> list[tuple[str, str]]:
    """Hostile pairs (second side hostile): a FLAC bomb, 655,350 Hz, silence, DC, a tone, an oversized upload."""
    bomb = folder / "bomb.flac"  # written in blocks: never more than 10 s of 8 channels in memory
    block = np.zeros((192_000 * 10, 8), dtype=np.int16)
    with sf.SoundFile(str(bomb), "w", 192_000, 8, subtype="PCM_16", format="FLAC") as out:
        for start in range(0, 599 * 192_000, len(block)):
            out.write(block[: min(len(block), 599 * 192_000 - start)])
    sf.write(folder / "fast_rate.wav", np.zeros(1000, np.float32), 655_350)
    sf.write(folder / "silence.wav", np.zeros(3 * 16000, np.float32), 16000)
    sf.write(folder / "dc.wav", np.full(3 * 16000, 0.3, np.float32), 16000)
    sf.write(folder / "tone.wav", 0.5 * np.sin(2 * np.pi * 440 * np.arange(3 * 16000) / 16000), 16000)
    big = voice(200.0, 16000, 5)  # 6.4 MB of PCM_16: over the bench's 5 MB upload limit
    sf.write(folder / "oversized.wav", big, 16000, subtype="PCM_16")
    names = ("bomb.flac", "fast_rate.wav", "silence.wav", "dc.wav", "tone.wav", "oversized.wav")
    return [(good_file, str(folder / name)) for name in names]


def save_tiny_model(folder: Path) -> Path:
    torch.manual_seed(0)
    WavLMRawNetForXVector(WavLMRawNetConfig.from_preset("tiny", num_labels=5)).save_pretrained(folder)
    return folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(server: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"{server.args} exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError(f"{server.args} did not answer within 300 s")


def server_env(threads: int | None) -> dict:
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def start_server(model: str, log_path: Path, threads: int | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, str(APP), "--model", model, "--host", "127.0.0.1", "--port", str(port)]
    command += ["--max-file-size", BENCH_MAX_FILE_SIZE]
    server = subprocess.Popen(command, stdout=open(log_path, "w"), stderr=subprocess.STDOUT, env=server_env(threads))
    url = f"http://127.0.0.1:{port}/"
    wait_for(server, url + "config", log_path)
    return server, url


def serve_handler(folder: str, port: int) -> None:
    """`handler.py` from the model folder, imported as Inference Endpoints does, behind a threading HTTP server:
    POST a JSON request, get the handler's JSON answer."""
    import importlib.util
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    spec = importlib.util.spec_from_file_location("handler", f"{folder}/handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler = module.EndpointHandler(folder)

    class Endpoint(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            answer = json.dumps(handler(json.loads(body))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):  # the handler logs refusals itself
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Endpoint).serve_forever()


def start_handler(model: str, log_path: Path, threads: int | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, __file__, "--serve-handler", model, str(port)]
    server = subprocess.Popen(command, stdout=open(log_path, "w"), stderr=subprocess.STDOUT, env=server_env(threads))
    url = f"http://127.0.0.1:{port}/"
    wait_for(server, url, log_path)
    return server, url


def server_rss(server: subprocess.Popen) -> int:
    return 1024 * _proc_kib(f"/proc/{server.pid}/status", "VmRSS")


def space_sender(url: str):
    """A function (pair, parameters) -> (ok, error) per client thread: `gradio_client` uploads and calls `/verify`."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(url, verbose=False)

    def send(pair, parameters):
        try:
            _, result = client.predict(handle_file(pair[0]), handle_file(pair[1]), api_name="/verify")
        except AppError as refused:
            return False, f"refused: {refused}"
        ok = isinstance(result, dict) and np.isfinite(result["score"])
        return ok, None if ok else f"bad answer {result!r}"

    send.close = client.close
    return send


_BASE64: dict[str, str] = {}


def handler_sender(url: str):
    """The same for the handler: a JSON POST of base64 audio and the parameters."""

    def encoded(path: str) -> str:
        if path not in _BASE64:
            _BASE64[path] = base64.b64encode(Path(path).read_bytes()).decode()
        return _BASE64[path]

    def send(pair, parameters):
        body = {"inputs": {"enroll": encoded(pair[0]), "test": encoded(pair[1])}}
        if parameters:
            body["parameters"] = parameters
        request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=600) as answer:
            result = json.loads(answer.read())
        if "error" in result:
            return False, f"refused: {result['error']}"
        return np.isfinite(result["score"]), None

    send.close = lambda: None
    return send


def run_level(make_sender, clients: int, jobs: list[tuple[bool, tuple[str, str], dict]]) -> dict:
    """Sends `jobs` (is_good, pair, parameters) from `clients` threads, each with its own session; returns the
    counts and times."""
    sessions = [make_sender() for _ in range(clients)]
    lock, next_job = threading.Lock(), iter(jobs)
    latencies, good_failures, bad_accepted, bad_refused = [], [], [], 0

    def work(send) -> None:
        nonlocal bad_refused
        while True:
            with lock:
                job = next(next_job, None)
            if job is None:
                return
            is_good, pair, parameters = job
            start = time.perf_counter()
            try:
                ok, error = send(pair, parameters)
            except Exception as failure:  # a transport error, a crash or a refused upload
                ok, error = False, f"{type(failure).__name__}: {str(failure)[:200]}"
            elapsed = time.perf_counter() - start
            with lock:
                if is_good:
                    latencies.append(elapsed)
                    if not ok:
                        good_failures.append(error)
                elif ok:
                    bad_accepted.append(f"{Path(pair[1]).name} {parameters}")
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


def make_jobs(rng, requests: int, good, bad, bad_fraction: float, hostile, hostile_fraction: float) -> list:
    """`requests` jobs: `bad_fraction` bad uploads, `hostile_fraction` hostile ones (none when `hostile` is empty),
    the rest good, in a random order."""
    n_bad = int(round(requests * bad_fraction))
    n_hostile = int(round(requests * hostile_fraction)) if hostile else 0
    kinds = rng.permutation(["bad"] * n_bad + ["hostile"] * n_hostile + ["good"] * (requests - n_bad - n_hostile))
    pools = {"good": good, "bad": bad, "hostile": hostile}
    jobs = []
    for i, kind in enumerate(kinds):
        pair, parameters = pools[kind][i % len(pools[kind])]
        jobs.append((kind == "good", pair, parameters))
    return jobs


def bench_target(name, start, make_sender, model, tmp, args, good, bad, hostile) -> tuple[list, list, list]:
    """Warm-up, then per client level the clean mix and (with --hostile) the hostile mix: table rows, failures,
    and (mix, clients, p99) for the p99 check."""
    server, url = start(model, tmp / f"{name}.log", args.threads)
    rows, failures, p99s = [], [], []
    try:
        rng = np.random.default_rng(0)
        warmup = [(True, good[i % len(good)][0], {}) for i in range(args.warmup)]
        warmup += [(False, pair, parameters) for pair, parameters in bad + hostile]
        run_level(lambda: make_sender(url), 2, warmup)
        rss_start = server_rss(server)
        for clients in args.clients:
            for mix, pool in (("clean", []), ("hostile", hostile)) if hostile else (("clean", []),):
                jobs = make_jobs(rng, args.requests, good, bad, args.bad_fraction, pool, args.hostile_fraction)
                level = run_level(lambda: make_sender(url), clients, jobs)
                rss = server_rss(server)
                p50, p95, p99 = np.percentile(level["latencies"], [50, 95, 99]) * 1000
                p99s.append((mix, clients, p99))
                n_refusable = sum(1 for job in jobs if not job[0])
                rows.append(
                    [
                        name,
                        mix,
                        str(clients),
                        f"{len(jobs)} ({n_refusable} bad/hostile)",
                        f"{len(jobs) / level['wall']:.1f}",
                        f"{p50:.0f} / {p95:.0f} / {p99:.0f}",
                        str(len(level["good_failures"])),
                        f"{level['bad_refused']} / {n_refusable}",
                        f"{rss / 2**20:.0f}",
                    ]
                )
                failures += [
                    f"{name} {mix} {clients} clients: good request failed: {e}" for e in level["good_failures"][:5]
                ]
                if level["bad_accepted"]:
                    failures.append(f"{name} {mix} {clients} clients: answered as good: {level['bad_accepted'][:5]}")
        alive = run_level(lambda: make_sender(url), 1, [(True, good[1][0], {})])
        rss_end = server_rss(server)
    finally:
        server.terminate()
        server.wait(timeout=30)
    growth = rss_end / rss_start - 1
    if alive["good_failures"]:
        failures.append(f"{name}: no answer after the load: {alive['good_failures']}")
    if growth > MAX_RSS_GROWTH:
        failures.append(f"{name}: server RSS grew {growth:.1%} (limit {MAX_RSS_GROWTH:.0%})")
    for clients in args.clients:
        clean = [p for mix, c, p in p99s if mix == "clean" and c == clients]
        rough = [p for mix, c, p in p99s if mix == "hostile" and c == clients]
        if clean and rough and rough[0] > MAX_P99_RATIO * clean[0]:
            failures.append(f"{name} {clients} clients: hostile p99 {rough[0]:.0f} ms > {MAX_P99_RATIO:g}x clean")
    note = (
        f"{name}: RSS after warm-up {rss_start / 2**20:.0f} MiB, after all levels {rss_end / 2**20:.0f} MiB "
        f"({growth:+.1%}); answered a good request after the load: {'NO' if alive['good_failures'] else 'yes'}"
    )
    return rows, failures, [note]


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-handler":
        serve_handler(sys.argv[2], int(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model folder (default: a tiny random-init model in a temporary folder)")
    parser.add_argument("--requests", type=int, default=300, help="requests per concurrency level and mix")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8], help="concurrency levels")
    parser.add_argument("--bad-fraction", type=float, default=0.1, help="share of bad uploads")
    parser.add_argument("--hostile", action="store_true", help="add the hostile mix, and the handler")
    parser.add_argument("--hostile-fraction", type=float, default=0.1, help="share of hostile requests")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of the good recordings")
    parser.add_argument("--warmup", type=int, default=20, help="requests before the baseline RSS is read")
    parser.add_argument("--threads", type=int, help="the server's OMP_NUM_THREADS (default: torch's choice)")
    parser.add_argument("--markdown-out")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]

    with tempfile.TemporaryDirectory(prefix="bench_serving_") as tmp:
        tmp = Path(tmp)
        model = args.model or str(save_tiny_model(tmp / "tiny_model"))
        good_pairs, bad_pairs = write_inputs(tmp, args.seconds)
        good = [(pair, {}) for pair in good_pairs]
        bad = [(pair, {}) for pair in bad_pairs]
        hostile = [(pair, {}) for pair in write_hostile(tmp, good_pairs[0][0])] if args.hostile else []
        rows, failures, notes = bench_target("space", start_server, space_sender, model, tmp, args, good, bad, hostile)
        if args.hostile:  # the handler: the same mixes, plus parameters that turned chunking off
            # No upload cap in the handler (Endpoints limits request sizes): the 6.4 MB file is 200 s of speech,
            # within its decode limits, so it stays out of the handler's hostile mix.
            within = [item for item in hostile if not item[0][1].endswith("oversized.wav")]
            zero_chunk = [(good_pairs[0], {"chunk_seconds": 0}), (good_pairs[1], {"chunk_seconds": 1e-5})]
            more = bench_target("handler", start_handler, handler_sender, model, tmp, args, good, bad,
                                within + zero_chunk)  # fmt: skip
            rows, failures, notes = rows + more[0], failures + more[1], notes + more[2]

    header = ["target", "mix", "clients", "requests", "req/s", "good p50 / p95 / p99 (ms)", "good failed",
              "refused", "RSS (MiB)"]  # fmt: skip
    model_note = f"`{Path(model).name}`" if args.model else "`tiny` preset, random weights"
    hostile_note = (
        f" Hostile mix: a further {args.hostile_fraction:.0%} of FLAC bombs (599 s x 192 kHz x 8 ch), 655,350 Hz "
        f"files, silence, DC, a tone and {BENCH_MAX_FILE_SIZE}+ uploads (the Space runs with --max-file-size "
        f"{BENCH_MAX_FILE_SIZE}); the handler's also chunk_seconds 0 and 1e-5. The handler is `handler.py` from the "
        "model folder behind a threading HTTP server (JSON, base64)."
        if args.hostile
        else ""
    )
    report = "\n".join(
        [
            f"{machine_caption(args.threads)}. `space/app.py` on 127.0.0.1, {model_note}, `/verify` through "
            f"`gradio_client` (each client its own session; upload + call), {args.seconds:g} s recordings, "
            f"{args.bad_fraction:.0%} bad uploads (empty wav, zero bytes, not audio, too short).{hostile_note} "
            f"{load_note(load_before)}.",
            "",
            markdown_table(header, rows),
            "",
            "; ".join(notes) + ".",
        ]
    )
    publish(report, args.markdown_out)
    for failure in failures:
        print("CHECK FAILED:", failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
