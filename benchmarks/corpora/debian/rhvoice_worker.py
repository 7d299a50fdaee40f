"""Child process of `RHVoiceSynthesizer`: speaks each request of a job file with libRHVoice (ctypes) and writes
int16 wav files. Imports nothing of the project (no torch).

    python -m benchmarks.corpora.debian.rhvoice_worker JOB.json
"""

from __future__ import annotations

import ctypes
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf


def main(job_path: str) -> int:
    """Child process: speak each request of a job file with libRHVoice and write int16 wav files."""
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    c = ctypes
    set_rate_type = c.CFUNCTYPE(c.c_int, c.c_int, c.c_void_p)
    speech_type = c.CFUNCTYPE(c.c_int, c.POINTER(c.c_short), c.c_uint, c.c_void_p)

    class Callbacks(c.Structure):  # RHVoice_callbacks (RHVoice.h, 1.x)
        _fields_ = [
            ("set_sample_rate", set_rate_type),
            ("play_speech", speech_type),
            ("process_mark", c.c_void_p),
            ("word_starts", c.c_void_p),
            ("word_ends", c.c_void_p),
            ("sentence_starts", c.c_void_p),
            ("sentence_ends", c.c_void_p),
            ("play_audio", c.c_void_p),
            ("done", c.c_void_p),
        ]

    class InitParams(c.Structure):  # RHVoice_init_params
        _fields_ = [
            ("data_path", c.c_char_p),
            ("config_path", c.c_char_p),
            ("resource_paths", c.POINTER(c.c_char_p)),
            ("callbacks", Callbacks),
            ("options", c.c_uint),
        ]

    class SynthParams(c.Structure):  # RHVoice_synth_params
        _fields_ = [
            ("voice_profile", c.c_char_p),
            ("absolute_rate", c.c_double),
            ("absolute_pitch", c.c_double),
            ("absolute_volume", c.c_double),
            ("relative_rate", c.c_double),
            ("relative_pitch", c.c_double),
            ("relative_volume", c.c_double),
            ("punctuation_mode", c.c_int),
            ("punctuation_list", c.c_char_p),
            ("capitals_mode", c.c_int),
            ("flags", c.c_int),
        ]

    library = c.CDLL(job["library"])
    library.RHVoice_new_tts_engine.restype = c.c_void_p
    library.RHVoice_new_tts_engine.argtypes = [c.POINTER(InitParams)]
    library.RHVoice_new_message.restype = c.c_void_p
    library.RHVoice_new_message.argtypes = [
        c.c_void_p,
        c.c_char_p,
        c.c_uint,
        c.c_int,
        c.POINTER(SynthParams),
        c.c_void_p,
    ]
    library.RHVoice_speak.argtypes = [c.c_void_p]
    library.RHVoice_delete_message.argtypes = [c.c_void_p]
    library.RHVoice_delete_tts_engine.argtypes = [c.c_void_p]
    state = {"rate": 0, "chunks": []}

    def on_rate(rate, _user):
        state["rate"] = rate
        return 1

    def on_speech(samples, count, _user):
        state["chunks"].append(np.ctypeslib.as_array(samples, (count,)).copy())
        return 1

    callbacks = Callbacks(set_rate_type(on_rate), speech_type(on_speech))
    params = InitParams(job["data_path"].encode(), job["config_path"].encode(), None, callbacks, 0)
    engine = library.RHVoice_new_tts_engine(c.byref(params))
    if not engine:
        print(f"RHVoice_new_tts_engine failed for data {job['data_path']}", file=sys.stderr)
        return 2
    try:
        for request in job["requests"]:
            state["chunks"] = []
            text = request["text"].encode("utf-8")
            synth = SynthParams(
                job["voice"].encode("utf-8"), request["rate"], request["pitch"], 0.0, 1.0, 1.0, 1.0, 0, None, 0, 0
            )
            message = library.RHVoice_new_message(engine, text, len(text), 0, c.byref(synth), None)
            if not message:
                print(f"RHVoice_new_message failed for voice {job['voice']!r}", file=sys.stderr)
                return 2
            spoken = library.RHVoice_speak(message)
            library.RHVoice_delete_message(message)
            if not spoken or not state["chunks"] or not state["rate"]:
                voice = job["voice"]
                print(f"RHVoice produced no audio for voice {voice!r} (is the voice installed?)", file=sys.stderr)
                return 2
            sf.write(request["out"], np.concatenate(state["chunks"]), state["rate"], subtype="PCM_16")
    finally:
        library.RHVoice_delete_tts_engine(engine)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
