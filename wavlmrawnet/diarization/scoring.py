"""DER and JER against a reference, through `pyannote.metrics` (the `[diarize]` extra): the field's own scorer.

Collars follow NIST md-eval: "collar 0.25 s" leaves 0.25 s on each side of every reference boundary unscored.
pyannote's `collar` is the total width centred on the boundary, so it is given twice the per-side value. Overlapped
speech is scored (`skip_overlap=False`): a frame where two people speak and one is found counts one miss.
"""

from __future__ import annotations

from .segments import Segment

__all__ = ["COLLARS", "annotation", "score_diarization"]

COLLARS = (0.25, 0.0)  # seconds on each side of a reference boundary (NIST's convention)


def annotation(segments: list[Segment], uri: str = "audio"):
    """A `pyannote.core.Annotation` of the segments."""
    from ..extras import import_module

    core = import_module("pyannote.core", "diarize", "diarization scoring")
    result = core.Annotation(uri=uri)
    for index, segment in enumerate(segments):
        result[core.Segment(segment.start, segment.end), index] = segment.speaker
    return result


def score_diarization(
    reference: list[Segment], hypothesis: list[Segment], collars=COLLARS, duration: float | None = None
) -> dict[str, float]:
    """`{"der@0.25": ..., "jer@0.25": ..., "der@0": ..., "jer@0": ...}` in percent, plus the parts of the DER at
    the first collar (`missed`, `false_alarm`, `confusion`, percent of the scored reference speech) and the speaker
    counts. The mapping of hypothesis to reference speakers is the optimal one (pyannote's Hungarian matching). The
    scored span is 0 to `duration` (default: the last turn's end in either)."""
    from ..extras import import_module

    metrics = import_module("pyannote.metrics.diarization", "diarize", "diarization scoring")
    if not reference:
        raise ValueError("the reference holds no speaker turn: DER is undefined")
    ref, hyp = annotation(reference), annotation(hypothesis)
    core = import_module("pyannote.core", "diarize", "diarization scoring")
    end = duration if duration is not None else max(s.end for s in [*reference, *hypothesis])
    uem = core.Timeline([core.Segment(0.0, end)])
    scores: dict[str, float] = {}
    for collar in collars:
        der = metrics.DiarizationErrorRate(collar=2 * collar, skip_overlap=False)
        jer = metrics.JaccardErrorRate(collar=2 * collar, skip_overlap=False)
        components = der(ref, hyp, uem=uem, detailed=True)
        key = format(collar, "g")
        scores[f"der@{key}"] = 100.0 * components["diarization error rate"]
        scores[f"jer@{key}"] = 100.0 * jer(ref, hyp, uem=uem)
        if collar == collars[0]:
            total = components["total"] or 1.0
            scores["missed"] = 100.0 * components["missed detection"] / total
            scores["false_alarm"] = 100.0 * components["false alarm"] / total
            scores["confusion"] = 100.0 * components["confusion"] / total
    scores["reference_speakers"] = len({s.speaker for s in reference})
    scores["found_speakers"] = len({s.speaker for s in hypothesis})
    return scores
