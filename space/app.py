"""The wavlmrawnet Gradio Space: verify two recordings, or enrol speakers and identify a recording among them.

    python space/app.py --model runs/wavlmrawnet/final            # a local model folder
    WAVLMRAWNET_MODEL=you/wavlmrawnet-vox1 python space/app.py      # or a Hub id

The model and its pipelines load once, through the model's remote code, in the automatic precision for the hardware.
Named API endpoints for `gradio_client`: `/verify`, `/enroll`, `/identify`, `/remove`, `/diarize` (the "Who spoke
when" tab: `wavlmrawnet.diarization`, a timeline picture and a table of turns). Enrolled speakers live in
the visitor's session (`gr.State`): nobody sees anyone else's.

What visitors are told: the model's card summary (trained on what, its EER and on which data) and a warning when the
card marks it as a demo or synthetic-data model, or has no card or evaluation; that the model's own code runs
(`trust_remote_code=True`), from which repository and revision (a Hub id must be pinned: `--revision` or
`user/repo@revision`). Uploads are capped (`--max-file-size`), audio is read within `wavlmrawnet.audio_io`'s decode
limits and `--max-seconds`, recordings without speech are refused, names are shown as text (never Markdown or HTML),
and each refusal is one log line, not a traceback.
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import ctypes.util
import logging
import os
import re
import sys
import threading
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from transformers import pipeline

from wavlmrawnet import SpeakerDatabase
from wavlmrawnet.audio_io import AudioDecodingError, AudioLimitError, load_audio
from wavlmrawnet.recognition import resolve_model
from wavlmrawnet.recognition.database import shown_name
from wavlmrawnet.recognition.hub_ids import parse_model_id

MAX_SECONDS = 600.0  # 10 minutes per recording
MAX_DIARIZATION_SECONDS = 1800.0  # a meeting for "Who spoke when": 30 minutes
MAX_FILE_SIZE = "50mb"  # per upload; Gradio refuses larger files while they arrive
TOP_K = 5
logger = logging.getLogger("wavlmrawnet.space")
_MARKUP = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>&])")


def as_text(name: str) -> str:
    """A speaker name for a Markdown component, shown as the text it is: every Markdown or HTML character is
    backslash-escaped (CommonMark), so `**x**`, `<b>x</b>` or `a | b` render literally and cannot break a table."""
    return _MARKUP.sub(r"\\\1", name)


def refuse(message: str, endpoint: str) -> gr.Error:
    """The error a visitor sees; the log gets one line, not a traceback."""
    logger.warning("refused %s: %.300s", endpoint, message)
    return gr.Error(message, print_exception=False)


def card_summary(folder: Path) -> tuple[str, str | None]:
    """(Markdown summary of the model card: trained on what, EER on which data; a warning or None).

    The warning is shown when the card is missing, marks the model as trained on synthetic data (the demo model),
    or reports no evaluation: a confident verdict from such a model says nothing about real voices."""
    from huggingface_hub import ModelCard

    from wavlmrawnet.model_card.generator import SYNTHETIC_TAG

    readme = folder / "README.md"
    if not readme.is_file():
        return "The model has no model card.", (
            "No model card: nothing says what this model was trained on or how accurate it is. Treat its verdicts "
            "as a demo; do not use them to verify real people."
        )
    card = ModelCard.load(readme)
    data = card.data
    datasets = ", ".join(as_text(str(d)) for d in (data.datasets or [])) or "not stated in the card"
    results = [r for r in (data.eval_results or []) if str(r.metric_type).lower() == "eer"]
    lines = [f"Trained on: {datasets}."]
    for result in results[:3]:
        split = f", {as_text(str(result.dataset_split))}" if result.dataset_split else ""
        lines.append(f"EER {float(result.metric_value):.2f} % on {as_text(str(result.dataset_name))}{split}.")
    if not results:
        lines.append("The card reports no evaluation (no EER).")
    synthetic = SYNTHETIC_TAG in (data.tags or []) or "synthetic demo corpus" in card.text
    warning = None
    if synthetic:
        warning = (
            "Demo model: trained and calibrated on synthetic speech only. Its scores and verdicts say nothing about "
            "real voices. Do not use it to verify real people."
        )
    elif not results:
        warning = "The card reports no evaluation: this model's accuracy is unknown. Treat its verdicts as unverified."
    return " ".join(lines), warning


M_ARENA_MAX = -8  # glibc <malloc.h>


def limit_malloc_arenas(count: int = 2) -> bool:
    """Caps glibc's malloc arenas. glibc gives threads their own arenas, and Gradio runs requests on a pool of worker
    threads, so freed memory spreads over many arenas and RSS creeps up under concurrent load; with two it stays flat
    (`benchmarks/bench_serving.py`). Same as `MALLOC_ARENA_MAX=2`; a no-op (False) off glibc."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_ARENA_MAX, count) == 1


def duration(seconds: float) -> str:
    """`"4.0 s"`, or `"10 min"` from a minute on."""
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:.3g} min"


class Recognizer:
    """The loaded model: a verification pipeline, an embedding pipeline sharing its model, and an empty database."""

    def __init__(self, model: str, max_seconds: float = MAX_SECONDS, device: str | None = None, revision=None):
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.max_seconds = max_seconds
        is_folder = Path(model).is_dir()
        repo_id, at_revision = (model, None) if is_folder else parse_model_id(model)
        self.revision = revision or at_revision
        folder = resolve_model(model, self.revision)  # a Hub id: that revision's snapshot, code and weights alike
        self.verifier = pipeline("speaker-verification", model=str(folder), trust_remote_code=True, device=device)
        # The embedding pipeline is the verifier's base class, from the same module: the model is in memory once.
        embedding_class = sys.modules[type(self.verifier).__module__].SpeakerEmbeddingPipeline
        self.embedder = embedding_class(
            model=self.verifier.model, feature_extractor=self.verifier.feature_extractor, device=self.verifier.device
        )
        # Gradio runs /verify, /enroll and /identify in worker threads, concurrently across endpoints; the model's
        # forward keeps per-call state on its modules, so one forward at a time (reading and checks stay parallel).
        self.model_lock = threading.Lock()
        self.precision = self.verifier.resolved_precision()  # "auto": bf16 where the hardware runs it natively
        self.empty_database = SpeakerDatabase.for_model(self.verifier.model)
        self.model_name = Path(model).name if is_folder else repo_id  # a folder by its name, a Hub id
        self.source = (
            f"the local folder `{as_text(self.model_name)}`"
            if is_folder
            else f"the Hub repository `{as_text(repo_id)}` at revision `{as_text(str(self.revision))}`"
        )
        self.summary, self.warning = card_summary(Path(folder))
        self.max_file_size = MAX_FILE_SIZE  # what the page states; main() passes the same value to launch()
        self.max_diarization_seconds = MAX_DIARIZATION_SECONDS

    def read(self, path: str | None, label: str, endpoint: str = "verify") -> dict:
        """An uploaded or recorded file -> `{"array" (mono, the model's rate), "sampling_rate", "path"}`, read within
        the decode limits (`wavlmrawnet.audio_io`) and `max_seconds`; a `gr.Error` says what is wrong."""
        if not path:
            raise refuse(f"{label}: no recording was given (upload a file or use the microphone)", endpoint)
        rate = self.verifier.feature_extractor.sampling_rate
        try:
            waveform = load_audio(path, rate, name=label, max_seconds=self.max_seconds)
        except AudioLimitError as error:
            raise refuse(str(error), endpoint) from None
        except AudioDecodingError as error:
            if "no audio samples" in error.reason or "zero bytes" in error.reason:
                raise refuse(f"{label} is empty: it holds no audio samples", endpoint) from None
            # libsndfile's and FFmpeg's words (and the upload's temporary path) mean nothing to a visitor: logged
            logger.info("unreadable upload for %s: %.300s", endpoint, error.reason)
            raise refuse(f"{label} is not a readable audio file (wav, flac, ogg or mp3)", endpoint) from None
        return {"array": waveform, "sampling_rate": rate, "path": label}

    def embed(self, path: str | None, label: str, endpoint: str) -> np.ndarray:
        """One recording's normalised embedding; long recordings are embedded in chunks (`config.chunk_seconds`)."""
        audio = self.read(path, label, endpoint)
        try:
            with self.model_lock:
                return self.embedder(audio)
        except ValueError as error:  # too short, NaN, no speech: the message names the problem
            raise refuse(str(error), endpoint) from None

    # ------------------------------------------------------------------ the endpoints
    def verify(self, first: str | None, second: str | None) -> tuple[str, dict]:
        """Two recordings -> (a Markdown verdict, `{"score", "same_speaker", "threshold"[, "probability"]}`)."""
        pair = (self.read(first, "Recording 1"), self.read(second, "Recording 2"))
        try:
            with self.model_lock:
                result = self.verifier(pair)
        except ValueError as error:
            raise refuse(str(error), "verify") from None
        result = {key: value.item() if isinstance(value, np.generic) else value for key, value in result.items()}
        verdict = "Same speaker" if result["same_speaker"] else "Different speakers"
        lines = [f"## {verdict}", f"score **{result['score']:.3f}**, threshold {result['threshold']:.3f}"]
        if "probability" in result:
            lines.append(f"calibrated probability of the same speaker: **{result['probability']:.1%}**")
        if self.warning:
            lines.append(f"**Warning:** {self.warning}")
        return "\n\n".join(lines), result

    def enroll(self, name: str, clips: list[str] | None, recording: str | None, database: SpeakerDatabase | None):
        """Adds clips (uploaded files and/or a recording) to `name` in this session's database."""
        from wavlmrawnet.recognition import check_speaker_name

        name = (name or "").strip()
        if not name:
            raise refuse("Give the speaker a name", "enroll")
        try:
            check_speaker_name(name)
        except ValueError as error:
            raise refuse(str(error), "enroll") from None
        paths = [path for path in (clips or []) if path] + ([recording] if recording else [])
        if not paths:
            raise refuse(f"No clip for {shown_name(name)}: upload one or more files, or record one", "enroll")
        label = shown_name(name)
        embeddings = np.stack([self.embed(path, f"{label}: clip {i + 1}", "enroll") for i, path in enumerate(paths)])
        database = self._session_database(database)
        try:
            database.add(name, embeddings)
        except ValueError as error:
            raise refuse(str(error), "enroll") from None
        return self._speaker_list(database), database

    def remove(self, name: str, database: SpeakerDatabase | None):
        """Removes `name` from this session's database."""
        database = self._session_database(database)
        try:
            database.remove((name or "").strip())
        except KeyError as error:
            raise refuse(error.args[0], "remove") from None
        return self._speaker_list(database), database

    def identify(self, clip: str | None, database: SpeakerDatabase | None) -> tuple[str, list[list], dict]:
        """One recording against this session's enrolled speakers: the best match or "unknown", and the top 5."""
        if database is None or len(database) == 0:
            raise refuse("No speaker is enrolled yet: enrol at least one speaker first", "identify")
        embedding = self.embed(clip, "The recording to identify", "identify")
        answer = database.identify(embedding, top_k=TOP_K)[0]
        answer = {**answer, "candidates": [[name, score] for name, score in answer["candidates"]]}
        answer["threshold"] = database.threshold
        if answer["speaker"] == "unknown":
            best = as_text(answer["candidates"][0][0])
            verdict = f"## Unknown speaker\n\nbest match \u201c{best}\u201d scores {answer['score']:.3f}"
        else:
            verdict = f"## {as_text(answer['speaker'])}\n\nscore **{answer['score']:.3f}**"
        verdict += f", threshold {database.threshold:.3f}"
        if self.warning:
            verdict += f"\n\n**Warning:** {self.warning}"
        table = [[name, round(score, 4)] for name, score in answer["candidates"]]
        return verdict, table, answer

    def diarize(self, path: str | None, num_speakers: float | None) -> tuple[str, str, list[list]]:
        """Who spoke when in one recording: a Markdown summary, a timeline PNG and the table of turns."""
        from wavlmrawnet.diarization import Diarizer

        if not path:
            raise refuse("The recording: no recording was given (upload a file or use the microphone)", "diarize")
        count = int(num_speakers) if num_speakers else None
        if count is not None and not 1 <= count <= 20:
            raise refuse(f"The number of speakers must be 1 to 20 (or 0 to estimate it), got {count}", "diarize")
        rate = self.verifier.feature_extractor.sampling_rate
        try:
            waveform = load_audio(path, rate, name="The recording", max_seconds=self.max_diarization_seconds)
        except AudioLimitError as error:
            raise refuse(str(error), "diarize") from None
        except AudioDecodingError as error:
            logger.info("unreadable upload for diarize: %.300s", error.reason)
            raise refuse("The recording is not a readable audio file (wav, flac, ogg or mp3)", "diarize") from None
        diarizer = Diarizer(
            self.verifier.model, self.verifier.feature_extractor, precision=self.precision, progress=False
        )
        try:
            with self.model_lock:
                result = diarizer(waveform, num_speakers=count, sampling_rate=rate, name="The recording")
        except ValueError as error:  # no speech, shorter than a window, more speakers than windows
            raise refuse(str(error), "diarize") from None
        summary = (
            f"## {result.num_speakers} speaker(s), {len(result.segments)} turn(s)\n\n"
            f"{duration(result.duration)} recorded, {duration(result.speech_seconds)} of speech"
        )
        if self.warning:
            summary += f"\n\n**Warning:** {self.warning}"
        table = [[round(s.start, 2), round(s.end, 2), s.speaker] for s in result.segments]
        return summary, timeline_image(result.segments, result.duration), table

    def _session_database(self, database: SpeakerDatabase | None) -> SpeakerDatabase:
        """The session's database, created on first use as a copy of the empty one."""
        return database if database is not None else copy.deepcopy(self.empty_database)

    @staticmethod
    def _speaker_list(database: SpeakerDatabase) -> str:
        if not len(database):
            return "No speaker enrolled yet."
        rows = "\n".join(f"| {as_text(name)} | {database.count(name)} |" for name in database.names)
        return f"| enrolled speaker | clips |\n| --- | --- |\n{rows}"


def timeline_image(segments, total: float):
    """A timeline of the turns, one row per speaker, as an image (matplotlib, drawn off-screen). Gradio writes it
    into its own cache, which `delete_cache` empties: a file of ours per request would pile up in the temp folder
    for as long as the Space runs."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from PIL import Image

    speakers = list(dict.fromkeys(s.speaker for s in segments))
    figure = Figure(figsize=(10, 0.6 + 0.45 * len(speakers)), dpi=100)
    axes = figure.subplots()
    for row, speaker in enumerate(speakers):
        spans = [(s.start, s.end - s.start) for s in segments if s.speaker == speaker]
        axes.broken_barh(spans, (row - 0.4, 0.8), color=f"C{row % 10}")
    axes.set_yticks(range(len(speakers)), speakers)
    axes.set_xlim(0, total)
    axes.set_ylim(len(speakers) - 0.5, -0.5)
    axes.set_xlabel("seconds")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    buffer.seek(0)
    with Image.open(buffer) as image:
        return image.convert("RGB")


def build_app(recognizer: Recognizer) -> gr.Blocks:
    """The tabs (Verify, Identify, Who spoke when), wired to `recognizer`."""

    def audio(label: str, elem_id: str) -> gr.Audio:
        # format=None keeps the file as uploaded: soundfile decodes it (no ffmpeg needed).
        return gr.Audio(label=label, sources=["upload", "microphone"], type="filepath", format=None, elem_id=elem_id)

    # Uploads are deleted an hour after they arrive (checked every 30 min), so a long-running Space keeps its disk.
    with gr.Blocks(title="wavlmrawnet speaker verification", delete_cache=(1800, 3600)) as app:
        gr.Markdown(
            f"# wavlmrawnet speaker verification\n\nModel `{recognizer.model_name}`, {recognizer.precision}. "
            f"Recordings up to {duration(recognizer.max_seconds)} and {recognizer.max_file_size} per upload; long "
            "ones are embedded in chunks; recordings without speech are refused.\n\n"
            f"**About this model:** {recognizer.summary}\n\n"
            f"This Space runs the model's own Python code (`trust_remote_code=True`) from {recognizer.source}.",
            elem_id="model-info",
        )
        if recognizer.warning:
            gr.Markdown(f"**Warning:** {recognizer.warning}", elem_id="model-warning")
        database = gr.State(None)  # per session: visitors never see each other's speakers
        with gr.Tab("Verify"):
            with gr.Row():
                first = audio("Recording 1", "verify-first")
                second = audio("Recording 2", "verify-second")
            verify_button = gr.Button("Verify", variant="primary", elem_id="verify-button")
            verdict = gr.Markdown(elem_id="verify-decision")
            verify_result = gr.JSON(label="result", elem_id="verify-result")
            verify_button.click(recognizer.verify, [first, second], [verdict, verify_result], api_name="verify")
        with gr.Tab("Identify"):
            with gr.Row():
                with gr.Column():
                    gr.Markdown("### Enrol a speaker")
                    name = gr.Textbox(label="Name", elem_id="enroll-name")
                    clips = gr.File(label="Clips", file_count="multiple", file_types=["audio"], elem_id="enroll-clips")
                    recording = audio("or record a clip", "enroll-recording")
                    with gr.Row():
                        enroll_button = gr.Button("Enrol", variant="primary", elem_id="enroll-button")
                        remove_button = gr.Button("Remove this name", elem_id="remove-button")
                    speakers = gr.Markdown("No speaker enrolled yet.", elem_id="enrolled")
                with gr.Column():
                    gr.Markdown("### Identify a recording")
                    clip = audio("Recording", "identify-clip")
                    identify_button = gr.Button("Identify", variant="primary", elem_id="identify-button")
                    identity = gr.Markdown(elem_id="identify-decision")
                    candidates = gr.Dataframe(
                        headers=["speaker", "score"],
                        datatype=["str", "number"],  # names as text, never Markdown
                        label=f"top {TOP_K}",
                        interactive=False,
                    )
                    identify_result = gr.JSON(label="result")
            enroll_button.click(
                recognizer.enroll, [name, clips, recording, database], [speakers, database], api_name="enroll"
            )
            remove_button.click(recognizer.remove, [name, database], [speakers, database], api_name="remove")
            identify_button.click(
                recognizer.identify, [clip, database], [identity, candidates, identify_result], api_name="identify"
            )
        with gr.Tab("Who spoke when"):
            with gr.Row():
                meeting = audio("Recording of a conversation", "diarize-recording")
                speaker_count = gr.Number(
                    label="Number of speakers (0: estimate it)", value=0, precision=0, elem_id="diarize-count"
                )
            diarize_button = gr.Button("Who spoke when?", variant="primary", elem_id="diarize-button")
            diarize_summary = gr.Markdown(elem_id="diarize-summary")
            timeline = gr.Image(label="timeline", format="png", elem_id="diarize-timeline", interactive=False)
            turns = gr.Dataframe(
                headers=["start (s)", "end (s)", "speaker"],
                datatype=["number", "number", "str"],
                label="turns",
                interactive=False,
                elem_id="diarize-turns",
            )
            diarize_button.click(
                recognizer.diarize, [meeting, speaker_count], [diarize_summary, timeline, turns], api_name="diarize"
            )
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default=os.environ.get("WAVLMRAWNET_MODEL"), help="model folder or Hub id ($WAVLMRAWNET_MODEL)"
    )
    parser.add_argument(
        "--revision",
        default=os.environ.get("WAVLMRAWNET_REVISION") or None,
        help="the Hub revision (a commit hash) to run, required for a Hub id: the model's own code runs here "
        "($WAVLMRAWNET_REVISION; or user/repo@revision)",
    )
    parser.add_argument("--host", help="address to serve on (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--max-seconds", type=float, default=MAX_SECONDS, help="longest accepted recording")
    parser.add_argument("--max-file-size", default=MAX_FILE_SIZE, help=f"largest upload (default {MAX_FILE_SIZE})")
    parser.add_argument(
        "--max-diarization-seconds",
        type=float,
        default=MAX_DIARIZATION_SECONDS,
        help="longest recording for the Who spoke when tab",
    )
    args = parser.parse_args(argv)
    if not args.model:
        parser.error("give the model: --model DIR_OR_HUB_ID, or set WAVLMRAWNET_MODEL")
    if Path(args.model).exists() and not (Path(args.model) / "config.json").is_file():
        parser.error(f"{args.model} is not a model folder (no config.json)")
    if not Path(args.model).exists() and not (args.revision or parse_model_id(args.model)[1]):
        parser.error(
            f"{args.model} is a Hub id without a revision: pin one with --revision COMMIT or {args.model}@COMMIT "
            "(the Space runs the repository's code with trust_remote_code=True, so an unpinned id would run "
            "whatever is pushed next)"
        )
    if not 0 < args.max_seconds <= 3600:
        parser.error(f"--max-seconds must be above 0 and at most 3600, got {args.max_seconds:g}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    limit_malloc_arenas()  # before any worker thread allocates
    recognizer = Recognizer(args.model, max_seconds=args.max_seconds, revision=args.revision)
    recognizer.max_file_size = args.max_file_size
    recognizer.max_diarization_seconds = args.max_diarization_seconds
    print(recognizer.precision, file=sys.stderr)
    build_app(recognizer).queue().launch(
        server_name=args.host, server_port=args.port, show_error=True, max_file_size=args.max_file_size
    )


if __name__ == "__main__":
    main()
