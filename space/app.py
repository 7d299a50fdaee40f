"""The wavlmrawnet Gradio Space: verify two recordings, or enrol speakers and identify a recording among them.

    python space/app.py --model runs/wavlmrawnet/final            # a local model folder
    WAVLMRAWNET_MODEL=you/wavlmrawnet-vox1 python space/app.py      # or a Hub id

The model and its pipelines load once, through the model's remote code, in the automatic precision for the hardware.
Named API endpoints for `gradio_client`: `/verify`, `/enroll`, `/identify`, `/remove`. Enrolled speakers live in
the visitor's session (`gr.State`): nobody sees anyone else's.
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

import gradio as gr
import numpy as np
import soundfile as sf
import torch
from transformers import pipeline

from wavlmrawnet import SpeakerDatabase

MAX_SECONDS = 600.0  # 10 minutes per recording
TOP_K = 5


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

    def __init__(self, model: str, max_seconds: float = MAX_SECONDS, device: str | None = None):
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.max_seconds = max_seconds
        self.verifier = pipeline("speaker-verification", model=model, trust_remote_code=True, device=device)
        # The embedding pipeline is the verifier's base class, from the same module: the model is in memory once.
        embedding_class = sys.modules[type(self.verifier).__module__].SpeakerEmbeddingPipeline
        self.embedder = embedding_class(
            model=self.verifier.model, feature_extractor=self.verifier.feature_extractor, device=self.verifier.device
        )
        self.precision = self.verifier.resolved_precision()  # "auto": bf16 where the hardware runs it natively
        self.empty_database = SpeakerDatabase.for_model(self.verifier.model)
        self.model_name = Path(model).name if Path(model).is_dir() else model  # a folder by its name, a Hub id

    def read(self, path: str | None, label: str) -> dict:
        """An uploaded or recorded file -> `{"array", "sampling_rate", "path"}`; a `gr.Error` says what is wrong."""
        if not path:
            raise gr.Error(f"{label}: no recording was given (upload a file or use the microphone)")
        try:
            with sf.SoundFile(path) as audio_file:
                seconds = audio_file.frames / audio_file.samplerate
                if seconds > self.max_seconds:
                    raise gr.Error(
                        f"{label} is {duration(seconds)} long; recordings up to {duration(self.max_seconds)} are "
                        "accepted"
                    )
                audio = audio_file.read(dtype="float32", always_2d=True)
                rate = audio_file.samplerate
        except gr.Error:
            raise
        except Exception as error:  # soundfile raises LibsndfileError, RuntimeError or TypeError
            reason = str(error).replace(f"'{path}': ", "")  # the upload's temporary path means nothing to a visitor
            raise gr.Error(f"{label} is not a readable audio file (wav, flac, ogg or mp3): {reason}") from None
        if audio.shape[0] == 0:
            raise gr.Error(f"{label} is empty: it holds no audio samples")
        return {"array": np.ascontiguousarray(audio.T), "sampling_rate": rate, "path": label}

    def embed(self, path: str | None, label: str) -> np.ndarray:
        """One recording's normalised embedding; long recordings are embedded in chunks (`config.chunk_seconds`)."""
        audio = self.read(path, label)
        try:
            return self.embedder(audio)
        except ValueError as error:  # too short, NaN, ...: the feature extractor names the problem
            raise gr.Error(str(error)) from None

    # ------------------------------------------------------------------ the endpoints
    def verify(self, first: str | None, second: str | None) -> tuple[str, dict]:
        """Two recordings -> (a Markdown verdict, `{"score", "same_speaker", "threshold"[, "probability"]}`)."""
        pair = (self.read(first, "Recording 1"), self.read(second, "Recording 2"))
        try:
            result = self.verifier(pair)
        except ValueError as error:
            raise gr.Error(str(error)) from None
        result = {key: value.item() if isinstance(value, np.generic) else value for key, value in result.items()}
        verdict = "Same speaker" if result["same_speaker"] else "Different speakers"
        lines = [f"## {verdict}", f"score **{result['score']:.3f}**, threshold {result['threshold']:.3f}"]
        if "probability" in result:
            lines.append(f"calibrated probability of the same speaker: **{result['probability']:.1%}**")
        return "\n\n".join(lines), result

    def enroll(self, name: str, clips: list[str] | None, recording: str | None, database: SpeakerDatabase | None):
        """Adds clips (uploaded files and/or a recording) to `name` in this session's database."""
        name = (name or "").strip()
        if not name:
            raise gr.Error("Give the speaker a name")
        paths = [path for path in (clips or []) if path] + ([recording] if recording else [])
        if not paths:
            raise gr.Error(f"No clip for {name!r}: upload one or more files, or record one")
        embeddings = np.stack([self.embed(path, f"{name}: clip {i + 1}") for i, path in enumerate(paths)])
        database = self._session_database(database)
        try:
            database.add(name, embeddings)
        except ValueError as error:
            raise gr.Error(str(error)) from None
        return self._speaker_list(database), database

    def remove(self, name: str, database: SpeakerDatabase | None):
        """Removes `name` from this session's database."""
        database = self._session_database(database)
        try:
            database.remove((name or "").strip())
        except KeyError as error:
            raise gr.Error(error.args[0]) from None
        return self._speaker_list(database), database

    def identify(self, clip: str | None, database: SpeakerDatabase | None) -> tuple[str, list[list], dict]:
        """One recording against this session's enrolled speakers: the best match or "unknown", and the top 5."""
        if database is None or len(database) == 0:
            raise gr.Error("No speaker is enrolled yet: enrol at least one speaker first")
        embedding = self.embed(clip, "The recording to identify")
        answer = database.identify(embedding, top_k=TOP_K)[0]
        answer = {**answer, "candidates": [[name, score] for name, score in answer["candidates"]]}
        answer["threshold"] = database.threshold
        if answer["speaker"] == "unknown":
            verdict = f"## Unknown speaker\n\nbest match {answer['candidates'][0][0]!r} scores {answer['score']:.3f}"
        else:
            verdict = f"## {answer['speaker']}\n\nscore **{answer['score']:.3f}**"
        verdict += f", threshold {database.threshold:.3f}"
        table = [[name, round(score, 4)] for name, score in answer["candidates"]]
        return verdict, table, answer

    def _session_database(self, database: SpeakerDatabase | None) -> SpeakerDatabase:
        """The session's database, created on first use as a copy of the empty one."""
        return database if database is not None else copy.deepcopy(self.empty_database)

    @staticmethod
    def _speaker_list(database: SpeakerDatabase) -> str:
        if not len(database):
            return "No speaker enrolled yet."
        rows = "\n".join(f"| {name} | {database.count(name)} |" for name in database.names)
        return f"| enrolled speaker | clips |\n| --- | --- |\n{rows}"


def build_app(recognizer: Recognizer) -> gr.Blocks:
    """The two tabs, wired to `recognizer`."""

    def audio(label: str, elem_id: str) -> gr.Audio:
        # format=None keeps the file as uploaded: soundfile decodes it (no ffmpeg needed).
        return gr.Audio(label=label, sources=["upload", "microphone"], type="filepath", format=None, elem_id=elem_id)

    # Uploads are deleted an hour after they arrive (checked every 30 min), so a long-running Space keeps its disk.
    with gr.Blocks(title="wavlmrawnet speaker verification", delete_cache=(1800, 3600)) as app:
        gr.Markdown(
            f"# wavlmrawnet speaker verification\n\nModel `{recognizer.model_name}`, {recognizer.precision}. "
            f"Recordings up to {duration(recognizer.max_seconds)}; long ones are embedded in chunks."
        )
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
                    candidates = gr.Dataframe(headers=["speaker", "score"], label=f"top {TOP_K}", interactive=False)
                    identify_result = gr.JSON(label="result")
            enroll_button.click(
                recognizer.enroll, [name, clips, recording, database], [speakers, database], api_name="enroll"
            )
            remove_button.click(recognizer.remove, [name, database], [speakers, database], api_name="remove")
            identify_button.click(
                recognizer.identify, [clip, database], [identity, candidates, identify_result], api_name="identify"
            )
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default=os.environ.get("WAVLMRAWNET_MODEL"), help="model folder or Hub id ($WAVLMRAWNET_MODEL)"
    )
    parser.add_argument("--host", help="address to serve on (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--max-seconds", type=float, default=MAX_SECONDS, help="longest accepted recording")
    args = parser.parse_args(argv)
    if not args.model:
        parser.error("give the model: --model DIR_OR_HUB_ID, or set WAVLMRAWNET_MODEL")
    if Path(args.model).exists() and not (Path(args.model) / "config.json").is_file():
        parser.error(f"{args.model} is not a model folder (no config.json)")
    limit_malloc_arenas()  # before any worker thread allocates
    recognizer = Recognizer(args.model, max_seconds=args.max_seconds)
    print(recognizer.precision, file=sys.stderr)
    build_app(recognizer).queue().launch(server_name=args.host, server_port=args.port, show_error=True)


if __name__ == "__main__":
    main()
