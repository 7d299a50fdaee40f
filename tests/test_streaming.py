"""The streaming dataset on its own: rows split across ranks and DataLoader workers without overlap, a seeded order,
resume after a cursor, bad audio skipped on the fly and listed in bad_audio.tsv (or a clear error)."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import voice_like
from datasets import Audio, Dataset

from wavlmrawnet.training.data import BadAudioError
from wavlmrawnet.training.data.streaming import StreamCursor, StreamingSpeakerDataset, held_out_speakers


def wav_bytes(seconds: float, seed: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, voice_like(seconds, 16000, seed), 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def make_stream(rows: int = 16, bad: dict[int, bytes] | None = None):
    entries = [{"bytes": (bad or {}).get(i, wav_bytes(0.8, i)), "path": f"utt{i:03d}.wav"} for i in range(rows)]
    dataset = Dataset.from_dict({"audio": entries, "speaker": [f"s{i % 4}" for i in range(rows)]})
    return dataset.cast_column("audio", Audio(decode=False)).to_iterable_dataset(num_shards=4)


def dataset(stream, rank=0, world_size=1, **kwargs) -> StreamingSpeakerDataset:
    label2id = {f"s{i}": i for i in range(4)}
    return StreamingSpeakerDataset(
        stream, "audio", "speaker", label2id, set(), rank, world_size, segment_seconds=0.5, shuffle_buffer=8, **kwargs
    )


def one_epoch(data: StreamingSpeakerDataset, num_workers: int = 0, items: int = 16) -> list[tuple]:
    loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=num_workers)
    return [(item["path"], tuple(item["stream"])) for item in itertools.islice(loader, items)]


def test_ranks_and_workers_read_disjoint_rows_in_a_seeded_order():
    stream = make_stream()
    ranks = [one_epoch(dataset(stream, rank, 2), num_workers=2, items=8) for rank in (0, 1)]
    names = [{name for name, _ in items} for items in ranks]
    assert len(names[0]) == len(names[1]) == 8 and not names[0] & names[1], "disjoint, and all 16 rows covered"
    workers = {stream_item[0] for _, stream_item in ranks[0]}
    assert workers == {0, 1}, "both DataLoader workers decode"
    again = one_epoch(dataset(stream, 0, 2), num_workers=2, items=8)
    assert again == ranks[0], "the same seed gives the same order"
    other_seed = one_epoch(dataset(stream, 0, 2, seed=1), num_workers=2, items=8)
    assert [n for n, _ in other_seed] != [n for n, _ in ranks[0]]


def test_resume_starts_after_the_cursor_and_the_stream_goes_on_into_the_next_epoch():
    data = dataset(make_stream())
    full = one_epoch(data, items=24)  # 16 rows: epoch 0, then 8 of epoch 1
    assert [s[1] for _, s in full[:16]] == [0] * 16 and [s[1] for _, s in full[16:]] == [1] * 8
    cursor = StreamCursor()
    cursor.update([s for _, s in full[:5]])
    resumed = dataset(make_stream())
    resumed.load_state(cursor.state)
    assert one_epoch(resumed, items=19) == full[5:]


def test_bad_items_are_skipped_on_the_fly_and_listed(tmp_path):
    bad = {3: b"RIFF not a wav at all", 7: wav_bytes(0.1, 7)}
    report = tmp_path / "bad_audio.tsv"
    data = dataset(make_stream(bad=bad), skip_bad_audio=True, bad_audio_report=report)
    items = one_epoch(data, items=15)  # the 14 good rows, then the first of the next epoch: every row was read
    assert {name for name, _ in items} == {f"utt{i:03d}.wav" for i in range(16)} - {"utt003.wav", "utt007.wav"}
    rows = sorted(line.split("\t") for line in report.read_text().splitlines())
    assert [r[0] for r in rows] == ["utt003.wav", "utt007.wav"]
    assert rows[0][1].startswith("unreadable") and rows[1][1].startswith("too short")

    strict = dataset(make_stream(bad=bad))
    with pytest.raises(BadAudioError, match="utt00[37].wav"):
        one_epoch(strict, items=16)


def test_nan_audio_is_bad_and_held_out_speakers_are_not_trained_on(tmp_path):
    buffer = io.BytesIO()
    sf.write(buffer, np.full(16000, np.nan, dtype=np.float32), 16000, format="WAV", subtype="FLOAT")
    report = tmp_path / "bad.tsv"
    data = dataset(make_stream(bad={2: buffer.getvalue()}), skip_bad_audio=True, bad_audio_report=report)
    data.held_out = {"s1"}
    names = {name for name, _ in one_epoch(data, items=11)}
    assert not names & {f"utt{i:03d}.wav" for i in range(1, 16, 4)}, "speaker s1 is held out"
    assert report.read_text().startswith("utt002.wav\tnan/inf")
    assert held_out_speakers([f"s{i}" for i in range(10)], 3, seed=0) == held_out_speakers(
        [f"s{i}" for i in reversed(range(10))], 3, seed=0
    )
