import pytest

from benchmarks.bench_diarization import models_to_measure


def test_compare_adds_named_rows_after_the_main_model_and_refuses_bad_names():
    models = models_to_measure("runs/a/final", "in-domain", ["make demo=demo_output/run/final", " b = runs/b "])
    assert list(models.items()) == [
        ("in-domain", "runs/a/final"),
        ("make demo", "demo_output/run/final"),
        ("b", "runs/b"),
    ]
    assert models_to_measure("m", "make demo", []) == {"make demo": "m"}
    for bad in (["no-equals-sign"], ["=dir"], ["name="], ["in-domain=x"], ["untrained=x"]):
        with pytest.raises(ValueError, match="--compare"):
            models_to_measure("runs/a/final", "in-domain", bad)
