"""The training loop: Accelerate for devices, DDP, mixed precision and accumulation; atomic checkpoints and resume;
validation EER on held-out speakers; the best model saved with `save_pretrained` into `<output_dir>/final`."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from tqdm.auto import tqdm
from transformers import get_scheduler

from ..configuration_wavlmrawnet import WavLMRawNetConfig
from ..evaluation.runner import evaluate_trial_list
from ..evaluation.trials import make_trials, write_trials
from ..model_card import write_model_card
from ..cpu_malloc import keep_freed_memory
from ..evaluation.runner import hardware_description
from ..modeling_wavlmrawnet import WavLMRawNetForXVector, resolve_precision
from .augment import Augmenter
from .config import TrainConfig
from .data import (
    SpeakerAudioDataset,
    SpeakerCollator,
    check_dataset_audio,
    dataset_from_manifest,
    dataset_from_voxceleb,
    label_maps,
    speaker_disjoint_split,
)


logger = logging.getLogger(__name__)
CHECKPOINT_PREFIX = "step-"
STATE_FILE = "trainer_state.json"
RUN_INFO_FILE = "run_info.json"  # the resolved precision and the hardware: which path produced the run's figures


# ----------------------------------------------------------------------------------------------- checkpoints
def completed_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """Finished checkpoints, oldest first (a crash mid-save leaves only a `.tmp-` folder, which is ignored)."""
    if not checkpoint_dir.is_dir():
        return []
    done = [p for p in checkpoint_dir.iterdir() if p.name.startswith(CHECKPOINT_PREFIX) and (p / STATE_FILE).exists()]
    return sorted(done, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))


def save_checkpoint(accelerator: Accelerator, checkpoint_dir: Path, state: dict, keep: int) -> Path:
    """`accelerator.save_state` into a temporary folder, then an atomic rename: a kill never leaves half a checkpoint."""
    final = checkpoint_dir / f"{CHECKPOINT_PREFIX}{state['step']:08d}"
    temporary = checkpoint_dir / f".tmp-{final.name}"
    if accelerator.is_main_process:
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)  # every rank writes its random state into it
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (temporary / STATE_FILE).write_text(json.dumps(state, indent=2))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(temporary, final)
        for old in completed_checkpoints(checkpoint_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


# ----------------------------------------------------------------------------------------------- pieces
def build_dataset(config: TrainConfig):
    data = config.data
    if bool(data.train_dir) == bool(data.train_manifest):
        raise ValueError("set exactly one of data.train_dir (VoxCeleb layout) and data.train_manifest")
    if data.train_dir:
        return dataset_from_voxceleb(data.train_dir)
    return dataset_from_manifest(data.train_manifest)


def build_model(config: TrainConfig, id2label: dict[int, str], label2id: dict[str, int]) -> WavLMRawNetForXVector:
    overrides = dict(config.model.overrides, id2label=id2label, label2id=label2id)
    if config.model.wavlm_pretrained:
        return WavLMRawNetForXVector.from_wavlm_pretrained(
            config.model.wavlm_pretrained, preset=config.model.preset, **overrides
        )
    return WavLMRawNetForXVector(WavLMRawNetConfig.from_preset(config.model.preset, **overrides))


def build_optimizer(model: WavLMRawNetForXVector, config: TrainConfig):
    """AdamW with one learning rate for the pretrained WavLM and another for the new layers."""
    training = config.training
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
    # Keep WavLM still for the first `freeze_wavlm_steps` steps: its learning-rate factor is 0 there.
    # (Its gradients still flow, so DDP sees the same graph throughout.)
    for index, group in enumerate(param_groups):
        if group["name"] == "wavlm" and training.freeze_wavlm_steps > 0:
            base = scheduler.lr_lambdas[index]
            freeze = training.freeze_wavlm_steps
            scheduler.lr_lambdas[index] = lambda step, base=base, freeze=freeze: 0.0 if step < freeze else base(step)
    return optimizer, scheduler


def parameter_digest(model: torch.nn.Module) -> str:
    """Hash of the trainable parameters (buffers such as BN statistics are re-broadcast by DDP each forward)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.named_parameters()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def flat_hparams(config: TrainConfig) -> dict:
    flat = {}
    for section, values in config.to_dict().items():
        for key, value in values.items():
            flat[f"{section}/{key}"] = value if isinstance(value, (int, float, str, bool)) else json.dumps(value)
    return flat


# ----------------------------------------------------------------------------------------------- the loop
def train(config: TrainConfig, resume: bool = False, record_batches: bool = False) -> dict:
    """Trains, validates, checkpoints and writes `<output_dir>/final`. Returns a summary dict (main process)."""
    training, data = config.training, config.data
    output_dir = Path(training.output_dir)
    checkpoint_dir = output_dir / "checkpoints"
    on_cpu = training.cpu or not torch.cuda.is_available()
    precision = resolve_precision(training.mixed_precision, "cpu" if on_cpu else "cuda", training=True)
    eval_precision = resolve_precision(training.mixed_precision, "cpu" if on_cpu else "cuda")
    accelerator = Accelerator(
        # Without a GPU, cpu=True is what lets torchrun's processes form a gloo group.
        cpu=on_cpu,
        mixed_precision=precision.accelerate_mixed_precision,
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        log_with="tensorboard",
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    set_seed(training.seed)
    if accelerator.device.type == "cpu":
        keep_freed_memory()  # a third of a CPU step is page faults otherwise
    main = accelerator.is_main_process
    if main:
        logger.info("training %s; evaluation %s", precision, eval_precision.name)
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "train_config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        run_info = {
            "training_precision": precision.to_dict(),
            "evaluation_precision": eval_precision.to_dict(),
            "hardware": hardware_description(accelerator.device),
            "num_processes": accelerator.num_processes,
        }
        (output_dir / RUN_INFO_FILE).write_text(json.dumps(run_info, indent=2) + "\n")
    accelerator.wait_for_everyone()

    # ---- data: speaker-disjoint validation split, bad files reported before any training
    dataset = build_dataset(config)
    splits = speaker_disjoint_split(dataset, data.validation_speakers, seed=training.seed)
    id2label, label2id = label_maps(splits["train"])
    model = build_model(config, id2label, label2id)
    feature_extractor = model.default_feature_extractor()
    # Every process checks (and raises) alike; only the main process writes the report.
    report_dir = output_dir if main else output_dir / f".bad_audio_rank{accelerator.process_index}"
    train_split = check_dataset_audio(
        splits["train"], feature_extractor.min_seconds, data.skip_bad_audio, report_dir, full_decode=data.full_audio_check
    )
    validation_split = check_dataset_audio(
        splits["validation"], feature_extractor.min_seconds, data.skip_bad_audio, report_dir,
        full_decode=data.full_audio_check,
    )
    if len(train_split) != len(splits["train"]):  # a speaker may have lost every file
        id2label, label2id = label_maps(train_split)
        model = build_model(config, id2label, label2id)

    augmenter = Augmenter.from_config(data.augment) if data.augment else None
    train_data = SpeakerAudioDataset(
        train_split, data.segment_seconds, feature_extractor.sampling_rate, random_crop=True,
        augmenter=augmenter, seed=training.seed, min_seconds=feature_extractor.min_seconds,
    )
    generator = torch.Generator().manual_seed(training.seed)
    train_loader = torch.utils.data.DataLoader(
        train_data, batch_size=training.batch_size, shuffle=True, drop_last=True, generator=generator,
        num_workers=data.num_workers, collate_fn=SpeakerCollator(feature_extractor, return_paths=True),
        persistent_workers=False,
    )
    validation_trials = output_dir / "validation_trials.txt"
    if main:
        write_trials(
            make_trials(
                validation_split["path"], validation_split["speaker"], data.validation_trials, training.seed,
                sessions=validation_split["video"] if "video" in validation_split.column_names else None,
            ),
            validation_trials,
        )

    summary = {"training_precision": precision.to_dict()}
    if training.test_before_training and data.test_trials and main:
        untrained = evaluate_trial_list(
            model, feature_extractor, data.test_trials, root=data.test_root, output_dir=output_dir / "untrained",
            batch_size=training.eval_batch_size, name="test", precision=eval_precision,
        )
        summary["untrained_test"] = {k: untrained[k] for k in ("eer_percent", "min_dcf", "num_trials")}
    accelerator.wait_for_everyone()

    # ---- model and optimisation
    if training.freeze_feature_encoder:
        model.freeze_feature_encoder()
    if training.gradient_checkpointing:
        model.activation_checkpointing_enable()
    optimizer, scheduler = build_optimizer(model, config)
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    accelerator.register_for_checkpointing(scheduler)
    batches_per_epoch = len(train_loader)
    if batches_per_epoch < training.gradient_accumulation_steps:
        raise ValueError(
            f"{len(train_data)} training files give {batches_per_epoch} batch(es) of {training.batch_size} per "
            "process: lower batch_size or add data"
        )

    state = {"step": 0, "best_validation_eer": None, "best_step": None}
    if resume:
        found = completed_checkpoints(checkpoint_dir)
        if found:
            accelerator.load_state(str(found[-1]))
            state = json.loads((found[-1] / STATE_FILE).read_text())
            accelerator.print(f"resumed from {found[-1]} (step {state['step']})")
        else:
            accelerator.print(f"--resume: no checkpoint in {checkpoint_dir}; starting from scratch")

    accelerator.init_trackers("wavlmrawnet", config=flat_hparams(config))
    metrics_file = output_dir / "metrics.jsonl"
    batches_file = output_dir / f"seen_batches.rank{accelerator.process_index}.jsonl" if record_batches else None

    def log(values: dict) -> None:
        accelerator.log(values, step=state["step"])
        if main:
            with metrics_file.open("a") as handle:
                handle.write(json.dumps({"step": state["step"], "time": round(time.time(), 3), **values}) + "\n")

    def validate() -> None:
        unwrapped = accelerator.unwrap_model(model)
        if main:
            results = evaluate_trial_list(
                unwrapped, feature_extractor, validation_trials, batch_size=training.eval_batch_size,
                name="validation", progress=False, precision=eval_precision,
            )
            log({"validation/eer": results["eer_percent"], "validation/min_dcf_0.01": results["min_dcf"]["0.01"]})
            best = state["best_validation_eer"]
            if best is None or results["eer_percent"] < best:
                state.update(best_validation_eer=results["eer_percent"], best_step=state["step"])
                unwrapped.config.verification_threshold = float(results["eer_threshold"])
                unwrapped.save_pretrained(output_dir / "best")
        accelerator.wait_for_everyone()

    total_steps = training.max_steps
    bar = tqdm(total=total_steps, initial=state["step"], desc="training", disable=not accelerator.is_local_main_process)
    model.train()
    micro_batches_done = state["step"] * training.gradient_accumulation_steps
    epoch, skip = divmod(micro_batches_done, batches_per_epoch)
    running_loss, running_count, started = 0.0, 0, time.time()
    while state["step"] < total_steps:
        train_loader.set_epoch(epoch)  # the shuffle order of this epoch
        train_data.set_epoch(epoch)  # and its random crops (accelerate leaves the dataset alone)
        loader = accelerator.skip_first_batches(train_loader, skip) if skip else train_loader
        skip = 0
        for batch in loader:
            paths = batch.pop("paths")
            if batches_file is not None:
                with batches_file.open("a") as handle:
                    handle.write(json.dumps({"step": state["step"], "paths": paths}) + "\n")
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
            scheduler.step()
            state["step"] += 1
            bar.update(1)
            step = state["step"]
            if step % training.log_every == 0 or step == total_steps:
                elapsed = max(time.time() - started, 1e-9)
                log({
                    "train/loss": running_loss / max(running_count, 1),
                    "train/lr_new": scheduler.get_last_lr()[0],
                    "train/lr_wavlm": scheduler.get_last_lr()[-1],
                    "train/samples_per_second": running_count * training.batch_size * accelerator.num_processes / elapsed,
                    "epoch": epoch,
                })
                bar.set_postfix(loss=f"{running_loss / max(running_count, 1):.3f}")
                running_loss, running_count, started = 0.0, 0, time.time()
            if step % training.eval_every == 0 or step == total_steps:
                model.eval()
                validate()
                model.train()
            if step % training.checkpoint_every == 0 or step == total_steps:
                save_checkpoint(accelerator, checkpoint_dir, dict(state), training.keep_checkpoints)
            if step >= total_steps:
                break
        epoch += 1
    bar.close()

    summary.update(steps=state["step"], best_validation_eer=state["best_validation_eer"], best_step=state["best_step"])
    unwrapped = accelerator.unwrap_model(model)
    if record_batches:
        (output_dir / f"param_digest.rank{accelerator.process_index}.txt").write_text(parameter_digest(unwrapped))
    accelerator.wait_for_everyone()
    if main:
        summary.update(write_final_model(config, output_dir, unwrapped, feature_extractor, eval_precision))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary


def write_final_model(config: TrainConfig, output_dir: Path, model, feature_extractor, precision) -> dict:
    """The best checkpoint (by validation EER) becomes `<output_dir>/final`, evaluated on the test trials if given."""
    final = output_dir / "final"
    best = output_dir / "best"
    if best.exists():
        model = WavLMRawNetForXVector.from_pretrained(best).to(next(model.parameters()).device)
    shutil.rmtree(final, ignore_errors=True)
    model.save_pretrained(final)
    feature_extractor.save_pretrained(final)
    for name in ("train_config.yaml", RUN_INFO_FILE):
        shutil.copy(output_dir / name, final / name)
    summary = {"final_model": str(final)}
    if config.data.test_trials:
        results = evaluate_trial_list(
            model, feature_extractor, config.data.test_trials, root=config.data.test_root, output_dir=final,
            batch_size=config.training.eval_batch_size, name="test", precision=precision,
            extra={"dataset_name": config.data.test_dataset_name} if config.data.test_dataset_name else None,
        )
        summary["test"] = {k: results[k] for k in ("eer_percent", "min_dcf", "num_trials", "results_json")}
    summary["model_card"] = str(write_model_card(final))
    return summary
