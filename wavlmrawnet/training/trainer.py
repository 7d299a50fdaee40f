"""The training loop: Accelerate for devices, DDP, mixed precision and accumulation; atomic checkpoints and resume;
validation EER on held-out speakers; the best model saved with `save_pretrained` into `<output_dir>/final`."""

from __future__ import annotations

import copy
import json
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, gather_object, set_seed
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import WavLMConfig, get_scheduler

from ..configuration_wavlmrawnet import WavLMRawNetConfig
from ..cpu_malloc import keep_freed_memory
from ..evaluation.runner import evaluate_trial_list, hardware_description
from ..evaluation.trials import make_trials, read_trials, write_trials
from ..feature_extraction_wavlmrawnet import WavLMRawNetFeatureExtractor
from ..model_card import write_model_card
from ..modeling_wavlmrawnet import WavLMRawNetForXVector
from ..precision import Precision, resolve_precision
from .augment import Augmenter
from .checkpoints import (
    check_output_dir,
    load_last_checkpoint,
    save_checkpoint,
)
from .config import TrainConfig, TrainingSection
from .data import (
    BAD_AUDIO_FILENAME,
    SpeakerAudioDataset,
    SpeakerCollator,
    check_dataset_audio,
    label_maps,
    speaker_disjoint_split,
    training_dataset,
)
from .data.sources import _embedded_audio_path, _make_dataset, load_hf_source, relabel
from .data.streaming import (
    StreamCursor,
    StreamingSpeakerDataset,
    first_pass_speakers,
    held_out_speakers,
    read_label2id_file,
    speaker_names,
)

logger = logging.getLogger(__name__)
RUN_INFO_FILE = "run_info.json"  # the resolved precision and the hardware: which path produced the run's figures
STREAM_SPEAKERS_FILE = "speakers.json"  # streaming: the training label2id, the held-out speakers, the first pass
VALIDATION_TRIALS = "validation_trials.txt"  # trials among the held-out speakers' files


class TrainingCallback:
    """Hooks into `train`, called on every process. Subclass it and override what you need (the DDP test records
    each process's batches and final weights with one)."""

    def on_batch(self, step: int, paths: list[str]) -> None:
        """Before each micro-batch: `step` optimizer steps are done, `paths` are this process's files."""

    def on_train_end(self, model: torch.nn.Module) -> None:
        """After the last step, before `final/` is written: `model` is the trained, unwrapped model."""


# ----------------------------------------------------------------------------------------------- setup
def training_device(training: TrainingSection) -> str:
    """The device training runs on: `"cuda"` where a GPU exists and `training.cpu` is off, else `"cpu"`."""
    return "cpu" if training.cpu or not torch.cuda.is_available() else "cuda"


def make_accelerator(training: TrainingSection) -> tuple[Accelerator, Precision, Precision]:
    """The Accelerator, with the precisions resolved for this hardware: (accelerator, training, evaluation)."""
    device = training_device(training)
    on_cpu = device == "cpu"
    precision = resolve_precision(training.mixed_precision, device, training=True)
    eval_precision = resolve_precision(training.mixed_precision, device)
    output_dir = Path(training.output_dir)
    accelerator = Accelerator(
        cpu=on_cpu,  # without a GPU, cpu=True is what lets torchrun's processes form a gloo group
        mixed_precision=precision.accelerate_mixed_precision,
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        log_with=training.log_with or None,  # any Accelerate tracker, or none
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    if accelerator.device.type == "cpu":
        keep_freed_memory()  # a third of a CPU step is page faults otherwise
    return accelerator, precision, eval_precision


def write_run_files(config: TrainConfig, accelerator: Accelerator, precision: Precision, eval_precision: Precision):
    """`train_config.yaml` and `run_info.json` (precisions and hardware) in the output folder, copied into final/."""
    output_dir = Path(config.training.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "train_config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    run_info = {
        "training_precision": precision.to_dict(),
        "evaluation_precision": eval_precision.to_dict(),
        "hardware": hardware_description(accelerator.device),
        "num_processes": accelerator.num_processes,
    }
    (output_dir / RUN_INFO_FILE).write_text(json.dumps(run_info, indent=2) + "\n")


def flat_hparams(config: TrainConfig) -> dict:
    flat = {}
    for section, values in config.to_dict().items():
        for key, value in values.items():
            flat[f"{section}/{key}"] = value if isinstance(value, (int, float, str, bool)) else json.dumps(value)
    return flat


def feature_extractor_for(config: TrainConfig) -> WavLMRawNetFeatureExtractor:
    """The feature extractor of the model to train (as `model.default_feature_extractor()`), known before the model:
    its minimum length decides which files pass the audio check, and so which speakers the classifier has."""
    overrides = copy.deepcopy(config.model.overrides)
    if config.model.wavlm_pretrained:  # the WavLM architecture comes from the checkpoint, as in from_wavlm_pretrained
        wavlm_overrides = {"layerdrop": 0.0, **overrides.pop("wavlm_config", {})}
        wavlm_config = WavLMConfig.from_pretrained(config.model.wavlm_pretrained, **wavlm_overrides)
        overrides["wavlm_config"] = wavlm_config.to_dict()
    model_config = WavLMRawNetConfig.from_preset(config.model.preset, **overrides)
    return WavLMRawNetFeatureExtractor(
        sampling_rate=model_config.sampling_rate, min_seconds=max(0.5, model_config.min_input_seconds)
    )


def load_splits(config: TrainConfig, min_seconds: float, report_dir: Path) -> tuple[Dataset, Dataset]:
    """The speaker-disjoint (train, validation) splits, their audio checked: bad files stop the run or are dropped."""
    data = config.data
    dataset = training_dataset(data, Path(config.training.output_dir))  # the source the config sets (a registry)
    # One check of every file before the split: one report and one error that list the bad files of both sides.
    dataset = check_dataset_audio(
        dataset, min_seconds, data.skip_bad_audio, report_dir, full_decode=data.full_audio_check
    )
    splits = speaker_disjoint_split(dataset, data.validation_speakers, seed=config.training.seed)
    return splits["train"], splits["validation"]


def write_validation_trials(config: TrainConfig, split: Dataset) -> None:
    """Seeded trials among the held-out speakers' files; same-speaker pairs come from different videos where known."""
    sessions = split["video"] if "video" in split.column_names else None
    trials = make_trials(
        split["path"], split["speaker"], config.data.validation_trials, config.training.seed, sessions=sessions
    )
    write_trials(trials, Path(config.training.output_dir) / VALIDATION_TRIALS)


def build_model(config: TrainConfig, train_split: Dataset | None, labels: dict[str, int] | None = None):
    """The model to train, one class per training speaker (`id2label` in sorted speaker order): from the split's
    labels, or from `labels` ({speaker: id}, streaming)."""
    if labels is not None:
        label2id = dict(labels)
        id2label = {i: speaker for speaker, i in label2id.items()}
    else:
        id2label, label2id = label_maps(train_split)
    overrides = dict(config.model.overrides, id2label=id2label, label2id=label2id)
    if config.model.wavlm_pretrained:
        model = WavLMRawNetForXVector.from_wavlm_pretrained(
            config.model.wavlm_pretrained, preset=config.model.preset, **overrides
        )
    else:
        model = WavLMRawNetForXVector(WavLMRawNetConfig.from_preset(config.model.preset, **overrides))
    if config.training.freeze_feature_encoder:
        model.freeze_feature_encoder()
    if config.training.gradient_checkpointing:
        model.activation_checkpointing_enable()
    return model


def build_train_loader(config: TrainConfig, train_split: Dataset, feature_extractor: WavLMRawNetFeatureExtractor):
    """Random crops (and augmentation) read in the DataLoader workers; the order and crops depend on the seed only."""
    data, training = config.data, config.training
    augmenter = Augmenter.from_config(data.augment) if data.augment else None
    dataset = SpeakerAudioDataset(
        train_split,
        data.segment_seconds,
        feature_extractor.sampling_rate,
        random_crop=True,
        augmenter=augmenter,
        seed=training.seed,
        min_seconds=feature_extractor.min_seconds,
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=training.batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(training.seed),
        num_workers=data.num_workers,
        collate_fn=SpeakerCollator(feature_extractor, return_paths=True),
        persistent_workers=False,
    )
    return dataset, loader


def load_stream(config: TrainConfig, accelerator: Accelerator, min_seconds: float):
    """Streaming: the speakers (a first pass over the speaker column, or `label2id_file`), the held-out validation
    speakers and their files (written to `<output_dir>/validation_audio`, checked); every rank reads them alike.

    Returns (stream, training label2id, held-out speakers, validation split)."""
    source, output_dir = config.data.dataset, Path(config.training.output_dir)
    stream = load_hf_source(source)
    speakers_file = output_dir / STREAM_SPEAKERS_FILE
    if accelerator.is_main_process:
        if source.label2id_file:
            speakers = read_label2id_file(source.label2id_file)
            summary = {"from": source.label2id_file}
        else:
            counts, rows, seconds = first_pass_speakers(stream, source.speaker_column)
            speakers = sorted(counts)
            summary = {"from": "first pass", "rows": rows, "seconds": round(seconds, 3)}
            logger.info("first pass: %d rows, %d speakers in %.2f s", rows, len(counts), seconds)
        held_out = held_out_speakers(speakers, config.data.validation_speakers, config.training.seed)
        validation = _stream_validation_split(stream, source, held_out, output_dir / "validation_audio")
        validation = check_dataset_audio(validation, min_seconds, True, output_dir, full_decode=True)
        validation.to_json(output_dir / "validation_split.jsonl")
        if not (output_dir / BAD_AUDIO_FILENAME).exists():  # training items found bad on the fly are appended
            (output_dir / BAD_AUDIO_FILENAME).write_text("path\treason\n")
        train_speakers = sorted(set(speakers) - held_out)
        label2id = {speaker: i for i, speaker in enumerate(train_speakers)}
        written = {"label2id": label2id, "held_out": sorted(held_out), **summary}
        speakers_file.write_text(json.dumps(written, indent=2))
    accelerator.wait_for_everyone()
    written = json.loads(speakers_file.read_text())
    validation = Dataset.from_json(str(output_dir / "validation_split.jsonl"))
    return stream, written["label2id"], set(written["held_out"]), validation


def _stream_validation_split(stream, source, held_out: set[str], extract_dir: Path) -> Dataset:
    """The held-out speakers' rows, their audio as local files (bytes written once, by content hash)."""
    extract_dir.mkdir(parents=True, exist_ok=True)
    paths, speakers = [], []
    for position, row in enumerate(stream):
        speaker = speaker_names(stream, source.speaker_column, row[source.speaker_column])
        if speaker in held_out:
            entry = row[source.audio_column]
            entry = {"path": entry, "bytes": None} if isinstance(entry, str) else entry
            paths.append(_embedded_audio_path(entry, position, extract_dir))
            speakers.append(speaker)
    return relabel(_make_dataset(paths, speakers, {}, source=f"the held-out speakers of {source.path!r}"))


def build_stream_loader(config: TrainConfig, accelerator, stream, label2id, held_out, feature_extractor):
    """The streaming DataLoader: this rank's share, shuffled, decoded in the workers (not wrapped by accelerate)."""
    data, training = config.data, config.training
    dataset = StreamingSpeakerDataset(
        stream,
        data.dataset.audio_column,
        data.dataset.speaker_column,
        label2id,
        held_out,
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
        segment_seconds=data.segment_seconds,
        sampling_rate=feature_extractor.sampling_rate,
        augmenter=Augmenter.from_config(data.augment) if data.augment else None,
        seed=training.seed,
        min_seconds=feature_extractor.min_seconds,
        shuffle_buffer=data.dataset.shuffle_buffer,
        skip_bad_audio=data.skip_bad_audio,
        bad_audio_report=Path(training.output_dir) / BAD_AUDIO_FILENAME,
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=training.batch_size,
        num_workers=data.num_workers,
        collate_fn=SpeakerCollator(feature_extractor, return_paths=True),
    )
    return dataset, loader


def stream_batches(accelerator: Accelerator, loader, cursor: StreamCursor):
    """Yields (epoch, batch) on this process's device; `cursor` follows what was consumed (for checkpoints)."""
    for batch in loader:
        cursor.update(batch.pop("stream"))
        epoch = max(epoch for epoch, _ in cursor.state.values())
        yield epoch, {k: v.to(accelerator.device) if torch.is_tensor(v) else v for k, v in batch.items()}


def build_optimizer(model: WavLMRawNetForXVector, training: TrainingSection):
    """AdamW with one learning rate for the pretrained WavLM and another for the new layers, and its schedule."""
    wavlm_ids = {id(p) for p in model.wavlm.parameters()} if model.wavlm is not None else set()
    groups = {"wavlm": [], "new": []}
    for parameter in model.parameters():
        if parameter.requires_grad:
            groups["wavlm" if id(parameter) in wavlm_ids else "new"].append(parameter)
    param_groups = [
        {"params": groups["new"], "lr": training.learning_rate, "name": "new"},
        {"params": groups["wavlm"], "lr": training.wavlm_learning_rate, "name": "wavlm"},
    ]
    param_groups = [g for g in param_groups if g["params"]]
    optimizer = torch.optim.AdamW(param_groups, weight_decay=training.weight_decay)
    scheduler = get_scheduler(
        training.scheduler, optimizer, num_warmup_steps=training.warmup_steps, num_training_steps=training.max_steps
    )
    # WavLM stands still for the first `freeze_wavlm_steps` steps through a zero learning-rate factor, not through
    # requires_grad: DDP registers its gradient hooks once, in prepare(), so the set of trained parameters must not
    # change mid-run (and AdamW's moments keep up meanwhile).
    names = [g["name"] for g in param_groups]
    if training.freeze_wavlm_steps > 0 and "wavlm" in names:
        index, until = names.index("wavlm"), training.freeze_wavlm_steps
        base = scheduler.lr_lambdas[index]
        scheduler.lr_lambdas[index] = lambda step: 0.0 if step < until else base(step)
    return optimizer, scheduler


def epochs_of_batches(accelerator: Accelerator, loader, dataset: SpeakerAudioDataset, epoch: int, skip: int):
    """Yields (epoch, batch) from `epoch` on, without end; a resumed run first skips the `skip` batches it has done."""
    while True:
        loader.set_epoch(epoch)  # the shuffle order of this epoch
        dataset.set_epoch(epoch)  # and its random crops (accelerate leaves the dataset alone)
        for batch in accelerator.skip_first_batches(loader, skip) if skip else loader:
            yield epoch, batch
        epoch, skip = epoch + 1, 0


# ----------------------------------------------------------------------------------------------- evaluation
def log(accelerator: Accelerator, output_dir: Path, step: int, values: dict) -> None:
    """To the trackers (TensorBoard) and to `<output_dir>/metrics.jsonl`."""
    accelerator.log(values, step=step)
    if accelerator.is_main_process:
        with (output_dir / "metrics.jsonl").open("a") as handle:
            handle.write(json.dumps({"step": step, "time": round(time.time(), 3), **values}) + "\n")


def validate(accelerator, model, feature_extractor, config: TrainConfig, precision: Precision, state: dict) -> None:
    """EER on the validation trials (main process); a new best is saved to `<output_dir>/best` with its threshold."""
    output_dir = Path(config.training.output_dir)
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        results = evaluate_trial_list(
            unwrapped,
            feature_extractor,
            output_dir / VALIDATION_TRIALS,
            batch_size=config.training.eval_batch_size,
            name="validation",
            progress=False,
            precision=precision,
            distributed=False,  # rank 0 alone
            # The held-out speakers' files passed the checks before training (training/data/audio_checks.py); a
            # recording the speech check would refuse must not stop a run mid-training. The test trials are checked.
            require_speech=False,
        )
        log(
            accelerator,
            output_dir,
            state["step"],
            {"validation/eer": results["eer_percent"], "validation/min_dcf_0.01": results["min_dcf"]["0.01"]},
        )
        if state["best_validation_eer"] is None or results["eer_percent"] < state["best_validation_eer"]:
            state.update(best_validation_eer=results["eer_percent"], best_step=state["step"])
            unwrapped.config.verification_threshold = float(results["eer_threshold"])
            unwrapped.save_pretrained(output_dir / "best")
    accelerator.wait_for_everyone()


def evaluate_test(config: TrainConfig, model, feature_extractor, output_dir: Path, precision: Precision, **kwargs):
    """The model on `data.test_trials`; its results files go to `output_dir`."""
    data = config.data
    return evaluate_trial_list(
        model,
        feature_extractor,
        data.test_trials,
        root=data.test_root,
        output_dir=output_dir,
        batch_size=config.training.eval_batch_size,
        name="test",
        precision=precision,
        distributed=False,  # the main process alone
        **kwargs,
    )


# ----------------------------------------------------------------------------------------------- the loop
def train(
    config: TrainConfig, resume: bool = False, callbacks: Sequence[TrainingCallback] = (), overwrite: bool = False
) -> dict:
    """Trains, validates, checkpoints and writes `<output_dir>/final`. Returns a summary dict (main process).

    An earlier run in `output_dir` is continued with `resume`, replaced with `overwrite` (its checkpoints, best and
    final models and metrics are removed first), else refused before anything is written (`check_output_dir`). The
    test trial list and its files are checked before training too, so a missing one does not surface after it."""
    training, data = config.training, config.data
    output_dir = Path(training.output_dir)
    replaced = check_output_dir(output_dir, resume, overwrite)
    if data.test_trials:
        read_trials(data.test_trials, root=data.test_root)  # missing list or files: an error now, not after training
    accelerator, precision, eval_precision = make_accelerator(training)
    set_seed(training.seed)
    main = accelerator.is_main_process
    if main:
        for earlier in replaced:
            shutil.rmtree(earlier) if earlier.is_dir() else earlier.unlink()
            logger.info("--overwrite: removed the earlier run's %s", earlier)
    accelerator.wait_for_everyone()
    if main:
        logger.info("training %s; evaluation %s", precision, eval_precision.name)
        write_run_files(config, accelerator, precision, eval_precision)
    accelerator.wait_for_everyone()

    # Data: speaker-disjoint splits, bad files reported before any training (every process checks and raises
    # alike; only the main one writes the report). The training speakers left are the model's classes.
    feature_extractor = feature_extractor_for(config)
    report_dir = output_dir if main else output_dir / f".bad_audio_rank{accelerator.process_index}"
    streaming = data.dataset is not None and data.dataset.streaming
    if streaming:
        stream, label2id, held_out, validation_split = load_stream(config, accelerator, feature_extractor.min_seconds)
        model = build_model(config, None, labels=label2id)
        train_data, train_loader = build_stream_loader(
            config, accelerator, stream, label2id, held_out, feature_extractor
        )
    else:
        train_split, validation_split = load_splits(config, feature_extractor.min_seconds, report_dir)
        model = build_model(config, train_split)
        train_data, train_loader = build_train_loader(config, train_split, feature_extractor)
    if main:
        write_validation_trials(config, validation_split)

    summary = {"training_precision": precision.to_dict()}
    if training.test_before_training and data.test_trials and main:
        untrained = evaluate_test(config, model, feature_extractor, output_dir / "untrained", eval_precision)
        summary["untrained_test"] = {k: untrained[k] for k in ("eer_percent", "min_dcf", "num_trials")}
    accelerator.wait_for_everyone()

    # Optimisation, wrapped by Accelerate (DDP, devices, mixed precision), then the last checkpoint if resuming.
    optimizer, scheduler = build_optimizer(model, training)
    if streaming:  # each rank reads its own split of the stream: accelerate must not re-shard or dispatch it
        model, optimizer = accelerator.prepare(model, optimizer)
    else:
        model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    accelerator.register_for_checkpointing(scheduler)
    batches_per_epoch = len(train_loader) if not streaming else training.gradient_accumulation_steps
    if batches_per_epoch < training.gradient_accumulation_steps:
        raise ValueError(
            f"{len(train_data)} training files give {batches_per_epoch} batch(es) of {training.batch_size} per "
            "process: lower batch_size or add data"
        )
    state = {"step": 0, "best_validation_eer": None, "best_step": None}
    if resume:
        state = load_last_checkpoint(accelerator, output_dir / "checkpoints", state)
    accelerator.init_trackers("wavlmrawnet", config=flat_hparams(config))

    if streaming:
        cursor = StreamCursor((state.get("stream") or {}).get(str(accelerator.process_index)))
        train_data.load_state(cursor.state)
        batches = stream_batches(accelerator, train_loader, cursor)
    else:
        epoch, skip = divmod(state["step"] * training.gradient_accumulation_steps, batches_per_epoch)
        batches = epochs_of_batches(accelerator, train_loader, train_data, epoch, skip)
    bar = tqdm(
        total=training.max_steps, initial=state["step"], desc="training", disable=not accelerator.is_local_main_process
    )
    running_loss, running_count, started = 0.0, 0, time.time()
    model.train()
    while state["step"] < training.max_steps:
        epoch, batch = next(batches)
        paths = batch.pop("paths")
        for callback in callbacks:
            callback.on_batch(state["step"], paths)

        # Forward, backward, clip, step: Accelerate holds the optimizer step (and DDP's sync) until the last
        # micro-batch of the accumulation.
        with accelerator.accumulate(model):
            loss = model(**batch).loss
            accelerator.backward(loss)
            if accelerator.sync_gradients and training.max_grad_norm > 0:
                accelerator.clip_grad_norm_(model.parameters(), training.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad()
        running_loss += loss.detach().float().item()
        running_count += 1
        if not accelerator.sync_gradients:
            continue

        # One optimizer step done: the schedule moves on.
        scheduler.step()
        state["step"] += 1
        step, last = state["step"], state["step"] == training.max_steps
        bar.update(1)

        # Log the mean loss since the last log, and the throughput.
        if step % training.log_every == 0 or last:
            seconds = max(time.time() - started, 1e-9)
            log(
                accelerator,
                output_dir,
                step,
                {
                    "train/loss": running_loss / running_count,
                    "train/lr_new": scheduler.get_last_lr()[0],
                    "train/lr_wavlm": scheduler.get_last_lr()[-1],
                    "train/samples_per_second": running_count
                    * training.batch_size
                    * accelerator.num_processes
                    / seconds,
                    "epoch": epoch,
                },
            )
            bar.set_postfix(loss=f"{running_loss / running_count:.3f}")
            running_loss, running_count, started = 0.0, 0, time.time()

        # Validation EER; the best model so far is kept in best/.
        if step % training.eval_every == 0 or last:
            model.eval()
            validate(accelerator, model, feature_extractor, config, eval_precision, state)
            model.train()  # also drops what validation derived from the weights (`WavLMRawNetForXVector.train`)

        # Checkpoint (atomic), for --resume.
        if step % training.checkpoint_every == 0 or last:
            if streaming:  # every rank's stream position, by rank
                state["stream"] = {str(r): c for r, c in enumerate(gather_object([cursor.state]))}
            save_checkpoint(accelerator, output_dir / "checkpoints", dict(state), training.keep_checkpoints)
    bar.close()

    # The best model becomes final/, evaluated on the test trials.
    summary.update(steps=state["step"], best_validation_eer=state["best_validation_eer"], best_step=state["best_step"])
    unwrapped = accelerator.unwrap_model(model)
    for callback in callbacks:
        callback.on_train_end(unwrapped)
    accelerator.wait_for_everyone()
    if main:
        summary.update(write_final_model(config, unwrapped, feature_extractor, eval_precision))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary


def write_final_model(config: TrainConfig, model, feature_extractor, precision: Precision) -> dict:
    """The best checkpoint (by validation EER) becomes `<output_dir>/final`, evaluated on the test trials if given."""
    output_dir = Path(config.training.output_dir)
    final, best = output_dir / "final", output_dir / "best"
    if best.exists():
        model = WavLMRawNetForXVector.from_pretrained(best).to(next(model.parameters()).device)
    shutil.rmtree(final, ignore_errors=True)
    model.save_pretrained(final)
    feature_extractor.save_pretrained(final)
    for name in ("train_config.yaml", RUN_INFO_FILE):
        shutil.copy(output_dir / name, final / name)
    summary = {"final_model": str(final)}
    if config.data.test_trials:
        name = config.data.test_dataset_name
        results = evaluate_test(
            config,
            model,
            feature_extractor,
            final,
            precision,
            extra={"dataset_name": name} if name else None,
            conditions=config.data.conditions,
            condition_seed=config.data.condition_seed,
        )
        summary["test"] = {k: results[k] for k in ("eer_percent", "min_dcf", "num_trials", "results_json")}
        if "conditions" in results:
            summary["test"]["conditions"] = {c: row["eer_percent"] for c, row in results["conditions"].items()}
    summary["model_card"] = str(write_model_card(final))
    return summary
