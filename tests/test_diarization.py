"""Diarization (`wavlmrawnet.diarization`, `wavlmrawnet diarize`): a real 3-voice conversation written to disk with
its RTTM reference, scored by pyannote.metrics; each bad input gets its message and no RTTM."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import cli_in_process

from wavlmrawnet.diarization import (
    CLUSTERINGS,
    DiarizationInputError,
    Diarizer,
    NoSpeechError,
    Segment,
    SpeakerCount,
    cluster_embeddings,
    diarize,
    merge_clusters,
    read_rttm,
    score_diarization,
    write_rttm,
)
from wavlmrawnet.diarization.conversations import plan_turns, synthetic_voices, write_conversation
from wavlmrawnet.diarization.segments import frame_labels, labels_to_segments, merge_short_turns
from wavlmrawnet.diarization.windows import sliding_windows
from wavlmrawnet.recognition import SpeakerDatabase

pytest.importorskip("spectralcluster", reason='the diarize extra: pip install -e ".[diarize]"')
RATE = 16000


@pytest.fixture(scope="module")
def conversation(tmp_path_factory):
    """About 25 s, three synthetic voices, turns of 0.5-6 s with pauses and some overlap: wav + reference RTTM."""
    folder = tmp_path_factory.mktemp("conversation")
    voices = synthetic_voices(3, seed=1, utterances=2, seconds=3.0)
    turns = plan_turns(list(voices), 25.0, np.random.default_rng(0), longest=6.0, overlap_probability=0.2)
    wav, rttm = write_conversation(folder, "meeting", turns, voices)
    one, _ = write_conversation(folder, "alone", [Segment(0.2, 4.0, "spk1")], voices)
    return {"wav": str(wav), "rttm": str(rttm), "reference": read_rttm(rttm)["meeting"], "one": str(one),
            "folder": folder, "voices": voices}  # fmt: skip


def oracle_windows(reference: list[Segment], window: float, hop: float):
    """The windows over the reference's speech, each labelled with the speaker who talks most in it."""
    regions = np.array(sorted((s.start, s.end) for s in reference))
    duration = max(s.end for s in reference)
    windows = sliding_windows(regions, duration, window, hop)
    speakers = sorted({s.speaker for s in reference})
    talk = np.array([[sum(max(0.0, min(e, s.end) - max(b, s.start)) for s in reference if s.speaker == name)
                      for name in speakers] for b, e in windows])  # fmt: skip
    return windows, regions, duration, talk.argmax(axis=1), speakers


@pytest.mark.parametrize("method", sorted(CLUSTERINGS))
def test_clustering_of_separable_embeddings_scores_a_low_der(conversation, method):
    """Embeddings that separate the voices (one direction per speaker, plus noise): both clusterings find three
    speakers without being told, the vote and merge give turns, and pyannote.metrics scores them low; a random
    labelling scores high, so the score can fail."""
    reference = conversation["reference"]
    windows, regions, duration, truth, speakers = oracle_windows(reference, 1.5, 0.75)
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((len(speakers), 64))
    embeddings = centres[truth] + 0.3 * rng.standard_normal((len(truth), 64))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    labels = cluster_embeddings(embeddings, method, SpeakerCount.of(None, None, 6), threshold=0.5)
    assert len(set(labels)) == 3
    frames = merge_short_turns(frame_labels(windows, labels, regions, duration, labels.max() + 1), 0.5, 0.0)
    found = labels_to_segments(frames, [f"S{k}" for k in range(labels.max() + 1)])
    scores = score_diarization(reference, found)
    assert scores["der@0.25"] < 15.0, scores  # what remains: overlapped speech (one speaker per frame), boundaries
    assert scores["der@0.25"] <= scores["der@0"] and scores["found_speakers"] == 3
    random_labels = rng.integers(0, 3, len(truth))
    frames = frame_labels(windows, random_labels, regions, duration, 3)
    assert score_diarization(reference, labels_to_segments(frames, ["a", "b", "c"]))["der@0.25"] > 30.0


def test_merge_clusters_joins_the_parts_of_each_speaker():
    """Long recordings are over-clustered, then merged: four speakers, each heard in three recording sessions that
    pull its windows apart, labelled by session (12 clusters). Merging the cluster centroids at cosine 0.5 gives back
    the four speakers; a threshold no centroid pair reaches merges nothing; the count bounds are kept."""
    rng = np.random.default_rng(0)
    speakers, sessions, per, dim = 4, 3, 30, 64
    centres, offsets = rng.standard_normal((speakers, dim)), rng.standard_normal((speakers, sessions, dim))
    speaker = np.repeat(np.arange(speakers), sessions * per)
    session = np.tile(np.repeat(np.arange(sessions), per), speakers)
    embeddings = centres[speaker] + 0.8 * offsets[speaker, session] + 0.8 * rng.standard_normal((len(speaker), dim))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    parts = speaker * sessions + session
    merged = merge_clusters(embeddings, parts, threshold=0.5)
    assert len(set(merged)) == speakers
    assert len(set(zip(merged, speaker))) == speakers  # each merged cluster is one whole speaker
    assert len(set(merge_clusters(embeddings, parts, threshold=0.99))) == speakers * sessions
    assert len(set(merge_clusters(embeddings, parts, threshold=0.5, high=2))) == 2
    assert len(set(merge_clusters(embeddings, parts, threshold=0.5, low=6))) == 6


@pytest.mark.slow  # three command runs with silero-vad; test_refusals_in_the_api covers the messages in test-fast
def test_cli_writes_rttm_and_refuses_each_bad_input_by_name(conversation, saved_tiny_model, tmp_path):
    """The conversation gets its RTTM with the asked-for count; a corrupt file, silence and a clip shorter than a
    window each get their message, no RTTM, and exit status 1; asking for more speakers than windows is refused."""
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(range(200)))
    silence, short = tmp_path / "silence.wav", tmp_path / "short.wav"
    sf.write(silence, np.zeros(3 * RATE, dtype=np.float32), RATE)
    sf.write(short, sf.read(conversation["wav"], dtype="float32")[0][RATE : 2 * RATE], RATE)
    out = tmp_path / "rttm"
    files = [conversation["wav"], str(corrupt), str(silence), str(short)]
    done = cli_in_process("diarize", *files, "--model", saved_tiny_model, "--num-speakers", "3", "--rttm-out",
                          str(out), "--quiet")  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["meeting.rttm"]
    written = read_rttm(out / "meeting.rttm")["meeting"]
    assert len({s.speaker for s in written}) == 3 and all(s.end > s.start for s in written)
    assert max(s.end for s in written) <= sf.info(conversation["wav"]).duration + 0.01
    assert "3 input(s) failed" in done.stderr
    assert "corrupt.wav: not a readable audio file" in done.stderr
    assert "silence.wav: no speech found (silence" in done.stderr
    assert "short.wav: the recording is 1.00 s long, shorter than one window (1.5 s)" in done.stderr
    assert "Traceback" not in done.stderr
    many = cli_in_process(
        "diarize", conversation["one"], "--model", saved_tiny_model, "--num-speakers", "40", "--threads", "1"
    )
    assert many.returncode == 1 and "40 speakers were asked for, but its speech gives only" in many.stderr
    one = cli_in_process(
        "diarize", conversation["one"], "--model", saved_tiny_model, "--json", "--quiet", "--threads", "1"
    )
    assert one.returncode == 0, one.stderr
    answer = json.loads(one.stdout)[0]  # one voice: one speaker, not a crash or a forced split
    assert answer["speakers"] == ["SPEAKER_00"] and answer["segments"][0]["start"] < 1.0


def test_python_api_takes_transformers_wavlm_xvector(conversation):
    """`diarize` with transformers' WavLMForXVector (tiny, random) on an array at 8 kHz: time-ordered segments
    within the recording, as many speakers as asked for."""
    from transformers import WavLMConfig, WavLMForXVector

    config = WavLMConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         conv_dim=(32, 32), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
                         num_conv_pos_embedding_groups=2, tdnn_dim=(32, 32), tdnn_kernel=(3, 1),
                         tdnn_dilation=(1, 1), xvector_output_dim=16, num_buckets=32)  # fmt: skip
    torch.manual_seed(0)
    model = WavLMForXVector(config).eval()
    audio, rate = sf.read(conversation["wav"], dtype="float32")
    import soxr

    audio_8k = soxr.resample(audio[: 12 * rate], rate, 8000)  # 12 s: the API path, not the scale
    segments = diarize(audio_8k, model=model, num_speakers=2, sampling_rate=8000, clustering="agglomerative")
    assert {s.speaker for s in segments} == {"SPEAKER_00", "SPEAKER_01"}
    assert all(a.end <= b.start for a, b in zip(segments, segments[1:]))
    assert 0 <= segments[0].start and segments[-1].end <= 12.01
    start, end, speaker = segments[0]  # a segment unpacks as (start, end, speaker)
    assert (start, end, speaker) == (segments[0].start, segments[0].end, segments[0].speaker)


def test_known_speakers_name_clusters_or_unknown(tiny_model):
    """With a database, a cluster whose mean is close to an enrolled speaker takes the name; the others are
    "unknown" (numbered when several)."""
    diarizer = Diarizer(tiny_model, progress=False)
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, tiny_model.config.embedding_dim))
    labels = np.repeat([0, 1, 2], 4)
    embeddings = centres[labels] + 0.05 * rng.standard_normal((12, tiny_model.config.embedding_dim))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    database = SpeakerDatabase.for_model(tiny_model)
    database.add("alice", embeddings[:4])
    database.threshold = 0.8
    diarizer.database = database
    assert diarizer._names(embeddings, labels, 3) == ["alice", "unknown_1", "unknown_2"]
    database.add("bob", embeddings[4:8])
    assert diarizer._names(embeddings, labels, 3) == ["alice", "bob", "unknown"]


def test_refusals_in_the_api(conversation, tiny_model):
    """The API raises the same named errors: no speech, a count above the windows, conflicting counts; an RTTM is
    never written empty."""
    diarizer = Diarizer(tiny_model)
    with pytest.raises(NoSpeechError, match="no speech"):
        diarizer(np.zeros(4 * RATE, dtype=np.float32), sampling_rate=RATE)
    with pytest.raises(DiarizationInputError, match="window"):
        diarizer(conversation["one"], min_speakers=30)
    with pytest.raises(ValueError, match="not both"):
        diarizer(conversation["one"], num_speakers=2, max_speakers=3)
    with pytest.raises(ValueError, match="NaN"):
        diarizer(np.full(4 * RATE, np.nan, dtype=np.float32), sampling_rate=RATE)
    with pytest.raises(ValueError, match="empty RTTM"):
        write_rttm(conversation["folder"] / "none.rttm", [], "none")
    assert not (conversation["folder"] / "none.rttm").exists()
