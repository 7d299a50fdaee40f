"""Speaker-verification metric (EER and normalised minDCF) for `evaluate`.

The maths lives in `wavlmrawnet.evaluation.error_rates`; this module only adapts
it to the `evaluate.Metric` interface.
"""

import datasets
import evaluate

from wavlmrawnet.evaluation.error_rates import compute_metrics

_DESCRIPTION = """\
Equal error rate (EER) and normalised minimum detection cost (minDCF) for
speaker verification. Each prediction is a trial score (higher = more likely
the same speaker); each reference is 1 for a target (same-speaker) trial and 0
for a non-target trial. EER is found by an exact ROC sweep with linear
interpolation at the FAR/FRR crossing. minDCF uses C_miss = C_fa = 1 and is
normalised by min(C_miss * P_target, C_fa * (1 - P_target)), so 1.0 means "no
better than always accepting or always rejecting".
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions (list of float): trial scores, higher = more likely same speaker.
    references (list of int): 1 = target (same speaker), 0 = non-target.
    p_targets (tuple of float, default (0.01, 0.05)): prior(s) for minDCF.
Returns:
    eer (float): equal error rate as a fraction (0..1).
    eer_percent (float): equal error rate in percent.
    eer_threshold (float): score threshold at the EER.
    min_dcf (dict): normalised minDCF keyed by p_target as a string, e.g. "0.01".
    min_dcf_thresholds (dict): threshold at each minDCF.
    num_trials, num_target, num_nontarget (int): trial counts.
Examples:
    >>> metric = evaluate.load("metrics/speaker_verification")
    >>> metric.compute(predictions=[0.9, 0.2, 0.7, 0.4], references=[1, 0, 1, 0])["eer"]
    0.0
"""

_CITATION = """\
@article{nagrani2020voxceleb,
  title   = {VoxCeleb: Large-scale speaker verification in the wild},
  author  = {Nagrani, Arsha and Chung, Joon Son and Xie, Weidi and Zisserman, Andrew},
  journal = {Computer Speech \\& Language},
  volume  = {60},
  year    = {2020}
}
@misc{nist2018sre,
  title  = {NIST 2018 Speaker Recognition Evaluation Plan},
  author = {{National Institute of Standards and Technology}},
  year   = {2018}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SpeakerVerification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("float32"),
                    "references": datasets.Value("int32"),
                }
            ),
            reference_urls=["https://www.robots.ox.ac.uk/~vgg/data/voxceleb/"],
        )

    def _compute(self, predictions, references, p_targets=(0.01, 0.05)):
        return compute_metrics(predictions, references, p_targets=p_targets)
