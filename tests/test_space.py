"""The Gradio Space, served by `space/app.py` in a subprocess on 127.0.0.1 and used as visitors and scripts use it:
through `gradio_client` and through a real headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import missing_system_tool, write_flac_bomb, write_wav

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "space" / "app.py"
# The tiny model is untrained: recordings of one synthetic voice (same seed, any rate or length) score >= 0.9996
# against each other and different voices <= 0.99, so this threshold separates them. It says nothing about accuracy.
THRESHOLD = 0.995
SERVER_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_app(model_dir: str | Path, log_path: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """`python space/app.py --model DIR` on a free 127.0.0.1 port; returns the process and its URL once it answers."""
    port = free_port()
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, str(APP), "--model", str(model_dir), "--host", "127.0.0.1", "--port", str(port), *extra],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **SERVER_ENV},
        cwd=log_path.parent,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"space/app.py exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "config", timeout=5) as answer:
                if answer.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"space/app.py did not answer within 180 s:\n{log_path.read_text()[-3000:]}")


def stop_app(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def space_model(tmp_path_factory, saved_tiny_model) -> Path:
    folder = tmp_path_factory.mktemp("space") / "model"
    shutil.copytree(saved_tiny_model, folder)
    config = json.loads((folder / "config.json").read_text())
    config["verification_threshold"] = THRESHOLD
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("space_audio")
    sf.write(folder / "no_samples.wav", np.zeros(0, dtype=np.float32), 16000)  # a valid header, no audio
    (folder / "zero_bytes.wav").write_bytes(b"")
    (folder / "not_audio.wav").write_bytes(b"RIFF but not really a wav file")
    sf.write(folder / "silence.wav", np.zeros(16000, dtype=np.float32), 16000)
    sf.write(folder / "tone.wav", 0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000), 16000)
    sf.write(folder / "fast_rate.wav", np.zeros(1000, dtype=np.float32), 655_350)
    (folder / "oversized.wav").write_bytes(b"\0" * (2 * 2**20))  # over the fixture's 1 MB upload limit
    return {
        "silence": str(folder / "silence.wav"),
        "tone": str(folder / "tone.wav"),
        "fast_rate": str(folder / "fast_rate.wav"),
        "bomb": write_flac_bomb(folder / "bomb.flac"),
        "oversized": str(folder / "oversized.wav"),
        "alice": write_wav(folder / "alice.wav", 1.5, 16000, seed=1),
        "alice_again": write_wav(folder / "alice_again.wav", 2.0, 16000, seed=1),
        "alice_stereo_44k": write_wav(folder / "alice_stereo_44k.wav", 1.5, 44100, seed=1, channels=2),
        "bob": write_wav(folder / "bob.wav", 1.5, 16000, seed=7),
        "carol": write_wav(folder / "carol.wav", 1.5, 16000, seed=11),
        "too_short": write_wav(folder / "too_short.wav", 0.05, 16000, seed=3),
        "long": write_wav(folder / "long.wav", 4.0, 16000, seed=1),
        "no_samples": str(folder / "no_samples.wav"),
        "zero_bytes": str(folder / "zero_bytes.wav"),
        "not_audio": str(folder / "not_audio.wav"),
    }


@pytest.fixture(scope="module")
def space_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("space_log") / "app.log"


@pytest.fixture(scope="module")
def space_url(space_model, space_log):
    # --max-seconds 3 makes the 4 s recording "too long" without a 10-minute file; 1 MB uploads, a 2 MB one too big.
    process, url = start_app(space_model, space_log, "--max-seconds", "3", "--max-file-size", "1mb")
    yield url
    stop_app(process)


@pytest.mark.slow
def test_verify_and_identify_through_gradio_client(space_url, recordings):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(space_url, verbose=False)
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/verify", "/enroll", "/identify", "/remove"} <= set(endpoints)

    def verify(first, second):
        return client.predict(handle_file(recordings[first]), handle_file(recordings[second]), api_name="/verify")

    text, same = verify("alice", "alice_again")
    assert same["same_speaker"] is True and same["threshold"] == THRESHOLD and same["score"] >= THRESHOLD
    assert "Same speaker" in text and f"{same['score']:.3f}" in text
    text, stereo = verify("alice", "alice_stereo_44k")  # stereo 44.1 kHz: made mono and resampled
    assert stereo["same_speaker"] is True and "Same speaker" in text
    text, different = verify("alice", "bob")
    assert different["same_speaker"] is False and different["score"] < THRESHOLD and "Different speakers" in text
    assert "probability" not in different  # the model has no calibration

    bad = {
        "no_samples": "Recording 2 is empty",
        "zero_bytes": "Recording 2 is not a readable audio file",
        "not_audio": "Recording 2 is not a readable audio file",
        "too_short": "too short",
        "long": r"Recording 2 is refused: it is 4\.0 s long; the limit is 3\.0 s",
        "silence": r"Recording 2: no speech found \(silence",
        "tone": r"Recording 2: no speech found \(a steady sound",
        "fast_rate": r"Recording 2 is refused: its sampling rate is 655,350 Hz; accepted rates are 1,000 to 192,000",
        "bomb": r"Recording 2 is refused: it is 40\.0 s long; the limit is 3\.0 s",
    }
    for name, message in bad.items():
        with pytest.raises(AppError, match=message) as raised:
            verify("alice", name)
        assert "Traceback" not in str(raised.value) and "/tmp/" not in str(raised.value)
        assert "BytesIO" not in str(raised.value) and "audio.T" not in str(raised.value)
    with pytest.raises(AppError, match="Recording 1: no speech found"):
        verify("silence", "silence")  # was "Same speaker, score 1.0000"
    with pytest.raises(Exception, match="(?i)too large|exceeds|413|maximum"):
        verify("alice", "oversized")  # Gradio refuses the upload itself: nothing is stored or decoded

    listing = client.predict("alice", [handle_file(recordings["alice"])], None, api_name="/enroll")
    assert "| alice | 1 |" in listing
    more, recorded = [handle_file(recordings["alice_stereo_44k"])], handle_file(recordings["alice_again"])
    listing = client.predict("alice", more, recorded, api_name="/enroll")
    assert "| alice | 3 |" in listing  # adding again updates the speaker
    listing = client.predict("bob", [handle_file(recordings["bob"])], None, api_name="/enroll")
    assert "| alice | 3 |" in listing and "| bob | 1 |" in listing

    text, table, answer = client.predict(handle_file(recordings["alice_again"]), api_name="/identify")
    assert answer["speaker"] == "alice" and answer["score"] >= THRESHOLD and answer["threshold"] == THRESHOLD
    assert [name for name, _ in answer["candidates"]] == ["alice", "bob"] and "## alice" in text
    assert [row[0] for row in table["data"]] == ["alice", "bob"]
    _, _, answer = client.predict(handle_file(recordings["carol"]), api_name="/identify")
    assert answer["speaker"] == "unknown" and answer["score"] < THRESHOLD  # no enrolled speaker is close enough
    with pytest.raises(AppError, match="is empty"):
        client.predict(handle_file(recordings["no_samples"]), api_name="/identify")
    with pytest.raises(AppError, match="Give the speaker a name"):
        client.predict("", [handle_file(recordings["bob"])], None, api_name="/enroll")

    # Another visitor has a session of their own: no speakers, and removing one is theirs alone.
    stranger = Client(space_url, verbose=False)
    with pytest.raises(AppError, match="No speaker is enrolled yet"):
        stranger.predict(handle_file(recordings["alice"]), api_name="/identify")
    listing = client.predict("bob", None, api_name="/remove")
    assert "bob" not in listing and "| alice | 3 |" in listing

    # Names: Markdown/HTML is escaped (shown as text); "Unknown" and a newline are refused; long names are cut.
    markup = "<b>Eve</b> | **x**"
    listing = client.predict(markup, [handle_file(recordings["bob"])], None, api_name="/enroll")
    assert r"| \<b\>Eve\</b\> \| \*\*x\*\* | 1 |" in listing
    for name, message in (("Unknown", "answer for no match"), ("UNKNOWN", "answer for no match"),
                          ("a\nb", "control characters")):  # fmt: skip
        with pytest.raises(AppError, match=message):
            client.predict(name, [handle_file(recordings["bob"])], None, api_name="/enroll")
    with pytest.raises(AppError) as raised:
        client.predict("x" * 100_000, None, api_name="/remove")
    assert len(str(raised.value)) < 500 and "(100000 characters)" in str(raised.value)


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if found := shutil.which(name):
            return found
    return None


@pytest.mark.slow
def test_verify_in_headless_chromium(space_url, space_log, recordings, tmp_path):
    """Upload two files in the page, press Verify, read the decision, and keep a screenshot; the page states what
    the model is (a warning here: the tiny model has no card) and that its code runs; a name with markup is shown as
    text."""
    chromium = find_chromium()
    if chromium is None:  # `make browser` installs Debian's chromium (`make test` runs it)
        missing_system_tool("no Chromium found (install Debian's chromium package: `make browser`)")
    from playwright.sync_api import expect, sync_playwright

    screenshot = tmp_path / "space_verify.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(space_url, wait_until="domcontentloaded")
            expect(page.locator("#verify-button")).to_be_visible(timeout=60_000)
            for elem_id, name in (("verify-first", "alice"), ("verify-second", "bob")):
                page.locator(f"#{elem_id} input[type=file]").set_input_files(recordings[name])
                expect(page.locator(f"#{elem_id} audio, #{elem_id} .waveform-container").first).to_be_attached(
                    timeout=30_000
                )
            page.locator("#verify-button").click()
            decision = page.locator("#verify-decision")
            expect(decision).to_contain_text("speaker", timeout=60_000)
            text = decision.inner_text()
            page.screenshot(path=str(screenshot), full_page=True)
            # A bad upload: the page shows the message, not a stack trace.
            page.locator("#verify-second button[aria-label='Clear']").click()
            page.locator("#verify-second input[type=file]").set_input_files(recordings["no_samples"])
            page.locator("#verify-button").click()
            expect(page.get_by_text("Recording 2 is empty: it holds no audio samples")).to_be_visible(timeout=60_000)
            assert "Traceback" not in page.content()
            info = page.locator("#model-info").inner_text()
            assert "trust_remote_code=True" in info and "the local folder" in info
            expect(page.locator("#model-warning")).to_contain_text("No model card")
            # Enrol a name holding Markdown and HTML: the list shows it as typed, with no <b> element and no broken
            # table (one row, two cells).
            page.get_by_role("tab", name="Identify").click()
            page.locator("#enroll-name textarea, #enroll-name input").first.fill("<b>Mallory</b> | **x**")
            page.locator("#enroll-clips input[type=file]").set_input_files(recordings["bob"])
            page.locator("#enroll-button").click()
            enrolled = page.locator("#enrolled")
            expect(enrolled).to_contain_text("<b>Mallory</b> | **x**", timeout=60_000)
            assert enrolled.locator("b, strong").count() == 0
            assert enrolled.locator("tbody tr").count() == 1 and enrolled.locator("tbody td").count() == 2
        finally:
            browser.close()
    assert "Different speakers" in text and f"threshold {THRESHOLD:.3f}" in text
    log = space_log.read_text()
    assert "refused verify: Recording 2 is empty" in log and "Traceback" not in log  # one line per refusal
    assert screenshot.stat().st_size > 10_000 and screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {screenshot}")
    if target := os.environ.get("WAVLMRAWNET_SCREENSHOT"):  # e.g. space/screenshot.png, shown in the README
        shutil.copyfile(screenshot, target)


def test_space_files_are_deployable():
    """The front matter Spaces reads, and a requirements.txt that installs the package with its `space` extra (which
    brings the core dependencies) rather than repeating them."""
    import tomllib

    import gradio
    from huggingface_hub.repocard import metadata_load

    metadata = metadata_load(REPO / "space" / "README.md")
    assert metadata["sdk"] == "gradio" and metadata["app_file"] == "app.py"
    assert metadata["sdk_version"] == gradio.__version__  # the version the tests ran
    assert len(metadata["short_description"]) <= 60  # the Hub's limit

    def name(requirement: str) -> str:
        return requirement.split(";")[0].split("[")[0].split("=")[0].split("<")[0].split(">")[0].strip().lower()

    lines = [line.strip() for line in (REPO / "space" / "requirements.txt").read_text().splitlines()]
    requirements = [line for line in lines if line and not line.startswith("#")]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert any(line.split("@")[0].strip() == "wavlmrawnet[space]" for line in requirements), requirements
    assert "space" in project["optional-dependencies"]
    repeated = {name(dependency) for dependency in project["dependencies"]} & {name(line) for line in requirements}
    assert not repeated, f"space/requirements.txt repeats the package's dependencies {sorted(repeated)}"
    assert f"gradio=={gradio.__version__}" in requirements


@pytest.mark.slow
def test_app_without_a_model_says_how_to_give_one(tmp_path, capsys):
    run = subprocess.run(  # the script as the Space starts it, the model read from the environment
        [sys.executable, str(APP)],
        capture_output=True,
        text=True,
        env={**os.environ, **SERVER_ENV, "WAVLMRAWNET_MODEL": ""},
        timeout=120,
    )
    assert run.returncode == 2 and "--model DIR_OR_HUB_ID, or set WAVLMRAWNET_MODEL" in run.stderr
    main = load_app_module().main  # the other refusals through its main, in this process
    for argv, message in (
        ([str(tmp_path)], "is not a model folder (no config.json)"),
        # a Hub id runs its repository's code: it must be pinned
        (["someone/wavlmrawnet"], "is a Hub id without a revision: pin one with --revision COMMIT"),
    ):
        with pytest.raises(SystemExit) as stop:
            main(["--model", *argv])
        assert stop.value.code == 2 and message in capsys.readouterr().err


def load_app_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("space_app", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_timeline_is_drawn_in_memory_not_left_in_the_temp_folder(tmp_path, monkeypatch):
    """Each Who-spoke-when answer drew its timeline into a file of its own in the temp folder, never removed: a
    running Space piled them up. The picture is now an image gradio writes into its cache, which the app empties."""
    import tempfile

    from wavlmrawnet.diarization import Segment

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    turns = [Segment(0.0, 3.0, "SPEAKER_00"), Segment(3.4, 6.4, "SPEAKER_01"), Segment(6.8, 9.0, "SPEAKER_00")]
    image = load_app_module().timeline_image(turns, 9.0)
    assert image.mode == "RGB" and image.size == (1000, 150)
    pixels = np.asarray(image)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 3, "bars, axes and labels drawn"
    assert list(tmp_path.iterdir()) == []


def test_calibrated_model_shows_the_probability(tmp_path, saved_tiny_model, recordings):
    import gradio as gr

    folder = tmp_path / "calibrated"
    shutil.copytree(saved_tiny_model, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(calibration={"scale": 200.0, "offset": -199.0}, p_target=0.5, verification_threshold=THRESHOLD)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    recognizer = load_app_module().Recognizer(str(folder), max_seconds=3.0)

    text, first = recognizer.verify(recordings["alice"], recordings["alice"])
    assert first["same_speaker"] is True and first["llr"] == pytest.approx(200.0 * first["score"] - 199.0, abs=1e-4)
    assert f"calibrated probability of the same speaker: **{first['probability']:.1%}**" in text
    _, result = recognizer.verify(recordings["alice"], recordings["bob"])
    assert result["probability"] < 0.5 < first["probability"] and result["same_speaker"] is False
    with pytest.raises(gr.Error, match="Recording 1: no recording was given"):
        recognizer.verify(None, recordings["bob"])


def test_the_page_summarises_the_model_card_and_warns_about_a_demo_model(tmp_path):
    """The card's training data and EER reach the page; a synthetic-data (demo) card, or none, brings a warning."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from wavlmrawnet.model_card.generator import SYNTHETIC_TAG

    app = load_app_module()
    result = EvalResult(task_type="audio-classification", dataset_type="voxceleb", dataset_name="VoxCeleb1-O",
                        dataset_split="test", metric_type="eer", metric_value=1.23)  # fmt: skip

    def card(tags, results):
        data = ModelCardData(tags=tags, datasets=["voxceleb2"], eval_results=results, model_name="m")
        ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n# m\n").save(tmp_path / "README.md")
        return app.card_summary(tmp_path)

    summary, warning = card(["speaker-verification"], [result])
    assert summary == "Trained on: voxceleb2. EER 1.23 % on VoxCeleb1\\-O, test." and warning is None
    summary, warning = card([SYNTHETIC_TAG], [result])
    assert warning.startswith("Demo model: trained and calibrated on synthetic speech only")
    assert "Do not use it to verify real people" in warning
    _, warning = card(["speaker-verification"], None)
    assert "reports no evaluation" in warning
    (tmp_path / "README.md").unlink()
    summary, warning = app.card_summary(tmp_path)
    assert summary == "The model has no model card." and warning.startswith("No model card")
    assert app.as_text("<b>a</b> | **b**") == r"\<b\>a\</b\> \| \*\*b\*\*"


@pytest.mark.slow
def test_concurrent_endpoints_share_the_model_safely(space_model, recordings):
    """Gradio runs different endpoints at once in worker threads: concurrent forwards on the one model corrupted
    each other (AttributeError / IndexError) before the Recognizer ran them one at a time."""
    from concurrent.futures import ThreadPoolExecutor

    recognizer = load_app_module().Recognizer(str(space_model), max_seconds=3.0)
    _, database = recognizer.enroll("alice", [recordings["alice"]], None, None)

    def call(index):
        if index % 2:
            return recognizer.verify(recordings["alice"], recordings["alice_stereo_44k"])[1]["score"]
        return recognizer.identify(recordings["alice_again"], database)[2]["score"]

    with ThreadPoolExecutor(4) as pool:
        scores = list(pool.map(call, range(12)))
    assert len({round(score, 5) for score in scores[1::2]}) == 1 and len({round(s, 5) for s in scores[::2]}) == 1


@pytest.mark.slow
def test_who_spoke_when_in_headless_chromium(space_url, space_log, recordings, tmp_path):
    """The "Who spoke when" tab: upload a two-voice conversation, ask for two speakers, and read the summary, the
    timeline picture (a real PNG) and the table of turns; a 1-s upload gets its message, not a traceback."""
    chromium = find_chromium()
    if chromium is None:
        missing_system_tool("no Chromium found (install Debian's chromium package: `make browser`)")
    from playwright.sync_api import expect, sync_playwright

    from wavlmrawnet.diarization import Segment
    from wavlmrawnet.diarization.conversations import synthetic_voices, write_conversation

    voices = synthetic_voices(2, seed=3, utterances=1, seconds=3.0)
    turns = [Segment(0.0, 3.0, "spk1"), Segment(3.4, 6.4, "spk2"), Segment(6.8, 9.0, "spk1")]
    conversation, _ = write_conversation(tmp_path, "two_voices", turns, voices)  # 9 s: under the 1 MB upload limit
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(space_url, wait_until="domcontentloaded")
            page.get_by_role("tab", name="Who spoke when").click()
            page.locator("#diarize-recording input[type=file]").set_input_files(recordings["silence"])
            page.locator("#diarize-button").click()
            expect(page.get_by_text("shorter than one window (1.5 s)")).to_be_visible(timeout=60_000)
            page.locator("#diarize-recording button[aria-label='Clear']").click()
            page.locator("#diarize-recording input[type=file]").set_input_files(str(conversation))
            expect(
                page.locator("#diarize-recording audio, #diarize-recording .waveform-container").first
            ).to_be_attached(timeout=30_000)
            page.locator("#diarize-count input").fill("2")
            page.locator("#diarize-button").click()
            expect(page.locator("#diarize-summary")).to_contain_text("2 speaker(s)", timeout=90_000)
            image = page.locator("#diarize-timeline img")
            expect(image).to_be_visible(timeout=30_000)
            picture = page.request.get(image.get_attribute("src")).body()
            expect(page.locator("#diarize-turns")).to_contain_text("SPEAKER_01", timeout=30_000)
            table = page.locator("#diarize-turns").inner_text()
            assert "Traceback" not in page.content()
        finally:
            browser.close()
    assert picture[:8] == b"\x89PNG\r\n\x1a\n" and len(picture) > 2_000
    assert "SPEAKER_00" in table and "SPEAKER_01" in table
    assert "refused diarize" in space_log.read_text() and "Traceback" not in space_log.read_text()
