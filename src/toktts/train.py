"""The training loop: a plain loop on `accelerate` (devices, mixed precision, data parallelism).

    toktts train --config configs/demo.yaml [--set train.max_steps=50] [--resume]
    accelerate launch --num_processes 2 -m toktts.cli train --config ...

Determinism that makes `--resume` exact: the batch order of epoch e depends only on
(seed, e), each process takes every world-th batch, and the RNG is reseeded from
(seed, step, rank) before every step, so a resumed run replays the same batches with the same
dropout masks as an uninterrupted one.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast
from tqdm import tqdm

from toktts.checkpoint import (
    checkpoint_dirs, load_latest_checkpoint, load_model_dir, save_checkpoint, save_model_dir, unwrap,
)
from toktts.codecs import build_codec, nearest_codes
from toktts.config import Config, TrainConfig, validate
from toktts.data import TokenDataset, bucket_batches, cache_dir, collate
from toktts.devices import keep_freed_memory
from toktts.errors import TokttsError
from toktts.files import write_atomic, writing
from toktts.longform import chunk_chars_for
from toktts.model import TokTTS, guided_attention_loss
from toktts.phonemes import PHONEME_VOCAB, text_vocab

log = logging.getLogger(__name__)


def complete_model_config(cfg: Config) -> Config:
    """Fill in the vocabulary sizes the model takes from the text module and the codec."""
    cfg.model.text_vocab_size = len(text_vocab(cfg.model.text_input))
    cfg.model.n_codebooks = cfg.codec.n_codebooks
    cfg.model.codebook_size = cfg.codec.codebook_size
    # The parts some training losses need: kept once made (a fine-tune may turn the loss off).
    cfg.model.unconditional = cfg.model.unconditional or cfg.train.text_dropout > 0
    cfg.model.ctc_head = cfg.model.ctc_head or cfg.train.ctc_weight > 0
    cfg.model.phoneme_head = cfg.model.phoneme_head or cfg.train.phoneme_weight > 0
    cfg.model.phoneme_vocab_size = len(PHONEME_VOCAB) if cfg.model.phoneme_head else 0
    return cfg


def lr_at(step: int, cfg: Config, minutes: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to lr * min_lr_ratio at max_steps -- or, with
    train.schedule=time, at max_minutes of training (`minutes` so far), whichever comes first."""
    t = cfg.train
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    progress = (step - t.warmup_steps) / max(1, t.max_steps - t.warmup_steps)
    if t.schedule == "time":
        progress = max(progress, minutes / t.max_minutes)
    floor = t.lr * t.min_lr_ratio
    return floor + (t.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def micro_batches(
    dataset: TokenDataset, cfg: Config, rank: int, world: int, start: int
) -> Iterator[list[int]]:
    """This process's batches (index lists), endlessly, skipping the first `start`."""
    t = cfg.train
    text_lengths = [len(x) for x in dataset.text_ids]
    epoch, seen = 0, 0
    while True:
        batches = bucket_batches(dataset.frames, text_lengths, t.batch_frames, t.max_batch_size, t.seed + epoch)
        mine = batches[rank::world][: len(batches) // world]  # every process takes the same count
        if not mine:
            raise TokttsError(
                f"the training set ({len(dataset)} utterances) is too small for {world} processes; "
                "use a larger corpus or fewer processes"
            )
        for batch in mine:
            if seen >= start:
                yield batch
            seen += 1
        epoch += 1


class _Clock:
    """Minutes of training so far (earlier legs included), the main process's count on every
    process: the schedule and the decision to stop must be the same everywhere, or one process
    would wait forever for another that stopped a step earlier."""

    def __init__(self, accelerator: Accelerator, minutes_before: float):
        self.accelerator, self.before, self.started = accelerator, minutes_before, time.monotonic()

    def total(self) -> float:
        minutes = self.before + (time.monotonic() - self.started) / 60
        if self.accelerator.num_processes == 1:
            return minutes
        return float(broadcast(torch.tensor([minutes], dtype=torch.float64, device=self.accelerator.device))[0])


@dataclass
class StepStats:
    loss: float
    ce: float
    guide: float
    frames: int
    ctc: float = 0.0
    phon: float = 0.0


@torch.no_grad()
def own_samples(model: TokTTS, batch: dict, drop_text: torch.Tensor | None) -> torch.Tensor:
    """(B, N, S) decoder inputs in which every code is the model's own sample given the true past
    (one teacher-forced pass without gradients; delay layout): what it will read when free."""
    tokens, layout = batch["tokens"], model.layout
    was_training = model.training
    model.eval()
    logits, _ = model(batch["text"], batch["text_lengths"], tokens, drop_text=drop_text)  # (B, S, N, V)
    model.train(was_training)
    codes = logits[..., : layout.codebook_size].float().softmax(-1)
    sampled = torch.multinomial(codes.reshape(-1, codes.shape[-1]), 1).view(codes.shape[:-1])  # (B, S, N)
    sampled = torch.where(tokens < layout.pad_id, sampled.transpose(1, 2), tokens)  # specials kept
    return model.decoder_inputs(sampled)


def train_step(
    model, batch: dict, cfg: Config, accelerator: Accelerator, near: torch.Tensor | None = None
) -> StepStats:
    """One forward and backward pass; `near` (K, C, n): the codes input noise draws from
    (`nearest_codes`), None for uniform noise."""
    t = cfg.train
    core = unwrap(model)
    guided = t.guided_attn_layers if t.guided_attn_weight > 0 else 0
    B = batch["text"].shape[0]
    drop_text = torch.rand(B, device=batch["text"].device) < t.text_dropout if t.text_dropout > 0 else None
    with accelerator.autocast():
        inputs = None
        if t.self_sampling > 0:
            own = own_samples(core, batch, drop_text)
            inputs = core.layout.corrupt(core.decoder_inputs(batch["tokens"]), t.self_sampling, replacement=own)
        logits, weights = model(
            batch["text"], batch["text_lengths"], batch["tokens"], attn_layers=guided, input_noise=t.input_noise,
            inputs=inputs, drop_text=drop_text, noise_near=near,
        )
        ce, _ = core.loss(logits, batch["tokens"], t.codebook_weights or None)
        loss = ce
        guide = torch.zeros(())
        steps = core.layout.n_steps(batch["frames"])  # (B,) decoder steps, EOS included
        keep = None if drop_text is None else ~drop_text  # the items that read their text
        if guided:
            if keep is not None:
                weights = [w[keep] for w in weights]
            if keep is None or keep.any():
                sub = (lambda x: x) if keep is None else (lambda x: x[keep])
                guide = guided_attention_loss(weights, sub(batch["text_lengths"]), sub(steps), t.guided_attn_sigma)
                loss = loss + t.guided_attn_weight * guide
        ctc = torch.zeros(())
        if t.ctc_weight > 0:
            ctc = core.ctc_loss(batch["text"], batch["text_lengths"], steps, keep)
            loss = loss + t.ctc_weight * ctc
        phon = torch.zeros(())
        if t.phoneme_weight > 0:
            phon = core.phoneme_loss(batch["text_lengths"], batch["phonemes"], batch["phoneme_lengths"])
            loss = loss + t.phoneme_weight * phon
    accelerator.backward(loss)
    return StepStats(loss.item(), ce.item(), guide.item(), int(batch["frames"].sum()), ctc.item(), phon.item())


@torch.no_grad()
def evaluate(model: TokTTS, dataset: TokenDataset, cfg: Config, device, accelerator: Accelerator) -> dict:
    """Validation loss and per-codebook token accuracy over the first eval_batches batches."""
    model.eval()
    t = cfg.train
    text_lengths = [len(x) for x in dataset.text_ids]
    batches = bucket_batches(dataset.frames, text_lengths, t.batch_frames, t.max_batch_size, seed=0)
    losses, accs, weights = [], [], []
    for indices in batches[: t.eval_batches]:
        batch = {k: v.to(device) for k, v in collate(dataset, indices, model.layout).items()}
        with accelerator.autocast():
            logits, _ = model(batch["text"], batch["text_lengths"], batch["tokens"])
            loss, _ = model.loss(logits, batch["tokens"])
            acc = model.accuracy(logits, batch["tokens"])
        losses.append(loss.item())
        accs.append(acc.float().cpu())
        weights.append(len(indices))
    model.train()
    total = sum(weights)
    acc = sum(a * w for a, w in zip(accs, weights)) / total
    out = {"val/loss": sum(l * w for l, w in zip(losses, weights)) / total}
    out.update({f"val/acc_{n}": float(a) for n, a in enumerate(acc)})
    return out


def make_optimizer(model: torch.nn.Module, t: TrainConfig) -> torch.optim.AdamW:
    """AdamW, with PyTorch's fused kernel: one pass over the weights instead of a handful of ops
    per tensor (demo size, one CPU thread: 13 vs 38 ms a step; same update, same state)."""
    return torch.optim.AdamW(
        model.parameters(), lr=t.lr, betas=(t.beta1, t.beta2), weight_decay=t.weight_decay, fused=True
    )


def init_weights(model: TokTTS, directory: str) -> None:
    """Start from a model directory's weights (fine-tuning). Parts the new config adds (the
    "no text" memory, the CTC head, an encoder prenet) keep their fresh initialisation, and
    transformer blocks it adds on top of the encoder's or the decoder's start as the identity;
    any other difference is an error naming the first mismatching tensor."""
    source, source_cfg, _ = load_model_dir(directory)
    if source_cfg.model.text_input != model.cfg.text_input:
        raise TokttsError(
            f"train.init_from {directory!r} reads {source_cfg.model.text_input}, this model reads "
            f"{model.cfg.text_input}: train it from scratch (--set train.init_from=) or set model.text_input="
            f"{source_cfg.model.text_input}"
        )
    ours, theirs = model.state_dict(), source.state_dict()
    for name, tensor in theirs.items():
        if name not in ours or ours[name].shape != tensor.shape:
            raise TokttsError(
                f"train.init_from {directory!r} does not fit this model ({name}: "
                f"{tuple(tensor.shape)} vs {tuple(ours[name].shape) if name in ours else 'absent'}); "
                "use the same model sizes and codec as that model"
            )
    model.load_state_dict(theirs, strict=False)
    for stack in ("encoder", "decoder"):
        for i, block in enumerate(getattr(model, stack).blocks):
            if f"{stack}.blocks.{i}.norm1.weight" not in theirs:
                block.zero_residuals()  # a new block: what the source model did, unchanged
    log.info("weights from %s (%d tensors; %d new)", directory, len(theirs), len(ours) - len(theirs))


def _truncate_history(path: Path, step: int) -> None:
    """Drop the log lines of steps after the one training starts from: they are redone."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (json.JSONDecodeError, KeyError):  # a line cut off by the kill
            continue
    write_atomic(path, "".join(line + "\n" for line in keep))


def _writing(path: Path):
    """One clear line instead of a traceback when the run's output cannot be written."""
    return writing(path, "choose another train.output_dir")


def train(cfg: Config, resume: bool = False, progress: bool = True) -> Path:
    """Train per `cfg` and write the final model directory to cfg.train.output_dir."""
    t = cfg.train
    complete_model_config(cfg)
    validate(cfg)  # a Config built in Python has not been through load_config
    precision = {"bf16": "bf16", "fp16": "fp16", "fp32": "no"}[t.precision]  # one of RULES' choices
    if precision == "fp16" and not torch.cuda.is_available():
        raise TokttsError("train.precision=fp16 needs a GPU; use bf16 (fast on AMX CPUs) or fp32")
    root = cache_dir(cfg)
    if not (root / "manifest.json").is_file():
        raise TokttsError(f"no token cache for this config at {str(root)!r}; run `toktts prepare` with the same config first")
    out_dir = Path(t.output_dir)
    if not resume and checkpoint_dirs(out_dir):  # a new run would prune them and overwrite its model
        raise TokttsError(
            f"train.output_dir {str(out_dir)!r} already holds the checkpoints of a run; pass --resume to "
            "continue it or choose another train.output_dir"
        )
    report = [] if t.report_to in ("", "none") else [t.report_to]
    accelerator = Accelerator(
        # cpu=True on a machine without a GPU makes `accelerate launch --num_processes N` run
        # N CPU processes joined by gloo instead of N independent runs.
        cpu=not torch.cuda.is_available(),
        mixed_precision=precision, gradient_accumulation_steps=t.grad_accum,
        log_with=report or None, project_dir=t.output_dir,
    )
    rank, world, device = accelerator.process_index, accelerator.num_processes, accelerator.device
    if device.type == "cpu":
        keep_freed_memory()
    train_set, val_set = (TokenDataset(root, split, cfg.model.text_input, phonemes=cfg.train.phoneme_weight > 0)
                          for split in ("train", "val"))
    if not cfg.generate.chunk_chars:  # saved with the model: long text is cut to lengths it knows
        cfg.generate.chunk_chars = chunk_chars_for(train_set.texts)
    if accelerator.is_main_process:  # early, so that an unwritable output_dir fails before any work
        with _writing(out_dir):
            out_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(out_dir / "train_config.json", cfg.to_json())

    codec = build_codec(cfg.codec, root if cfg.codec.name == "mel" else None)
    near = None
    if t.input_noise_near:
        near = nearest_codes(codec.codewords(), min(t.input_noise_near, codec.codebook_size - 1)).to(device)

    torch.manual_seed(t.seed)
    model = TokTTS(cfg.model)
    optimizer = make_optimizer(model, t)
    step, minutes_before = 0, 0.0
    resumed = load_latest_checkpoint(out_dir, model, optimizer) if resume else None
    if t.init_from and resumed is None:
        init_weights(model, t.init_from)
    if resume and resumed is None:
        log.warning("--resume: no complete checkpoint in %s; starting from scratch", out_dir)
    if resumed is not None:
        checkpoint, state = resumed
        step = state["step"]
        minutes_before = state.get("minutes", 0.0)
        if "minutes" not in state and t.schedule == "time" and accelerator.is_main_process:
            log.warning("%s does not say how long the run has trained (it predates train.schedule); "
                        "train.schedule=time counts from 0 minutes here", checkpoint)
        if accelerator.is_main_process:
            log.info("resumed from %s (step %d)", checkpoint, step)
    if accelerator.is_main_process:
        with _writing(out_dir / "history.jsonl"):
            _truncate_history(out_dir / "history.jsonl", step)
    if t.compile:
        model = torch.compile(model)
    model, optimizer = accelerator.prepare(model, optimizer)
    if report:
        accelerator.init_trackers(t.run_name or out_dir.name, config=cfg.to_dict())
    if accelerator.is_main_process:
        log.info("model: %.2fM parameters; %d train / %d val utterances; %d process(es) on %s",
                 unwrap(model).num_params() / 1e6, len(train_set), len(val_set), world, device)

    layout = unwrap(model).layout
    batches = micro_batches(train_set, cfg, rank, world, start=step * t.grad_accum)
    clock = _Clock(accelerator, minutes_before)
    history_path = out_dir / "history.jsonl"
    model.train()
    frames_seen, window_start = 0, time.monotonic()

    def save(step: int, minutes: float) -> None:
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            with _writing(out_dir / "checkpoints"):
                save_checkpoint(out_dir, step, unwrap(model), cfg, codec, optimizer,
                                {"step": step, "minutes": minutes}, t.keep_last)

    show_bar = progress and accelerator.is_main_process
    timed = t.schedule == "time"  # the bar counts what ends the run: minutes, or steps
    bar_total, bar_done = (round(t.max_minutes * 60), round(minutes_before * 60)) if timed else (t.max_steps, step)
    # `with` ends the bar's line even when an error stops training: the error gets a line of its own
    with tqdm(total=bar_total, initial=min(bar_done, bar_total), desc="train", unit="s" if timed else "it",
              disable=not show_bar) as bar:
        spent_before = timed and minutes_before >= t.max_minutes
        if spent_before and accelerator.is_main_process:
            log.info("step %d: the run has had its train.max_minutes=%s (schedule=time); nothing to train",
                     step, t.max_minutes)
        minutes = clock.total()  # then once a step, after it: the next step's lr reads the same count
        while step < t.max_steps and not spent_before:
            lr = lr_at(step, cfg, minutes)
            for group in optimizer.param_groups:
                group["lr"] = lr
            stats = []
            for micro in range(t.grad_accum):
                torch.manual_seed(t.seed * 1_000_003 + (step * t.grad_accum + micro) * world + rank)
                batch = {k: v.to(device) for k, v in collate(train_set, next(batches), layout).items()}
                with accelerator.accumulate(model):
                    stats.append(train_step(model, batch, cfg, accelerator, near))
                    if accelerator.sync_gradients and t.grad_clip > 0:
                        accelerator.clip_grad_norm_(model.parameters(), t.grad_clip)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
            step += 1
            frames_seen += sum(s.frames for s in stats) * world
            record = {
                "step": step, "lr": lr,
                "loss": sum(s.loss for s in stats) / len(stats),
                "ce": sum(s.ce for s in stats) / len(stats),
                "guide": sum(s.guide for s in stats) / len(stats),
            }
            if t.ctc_weight > 0:
                record["ctc"] = sum(s.ctc for s in stats) / len(stats)
            if t.phoneme_weight > 0:
                record["phon"] = sum(s.phon for s in stats) / len(stats)
            if step % t.log_every == 0 or step == 1:
                elapsed = time.monotonic() - window_start
                record["frames_per_s"] = frames_seen / max(elapsed, 1e-9)
                frames_seen, window_start = 0, time.monotonic()
            minutes = clock.total()
            # schedule=time: max_minutes of training in all; otherwise of this leg
            spent = t.max_minutes > 0 and (minutes if timed else minutes - minutes_before) >= t.max_minutes
            leg_done = not spent and t.leg_minutes > 0 and minutes - minutes_before >= t.leg_minutes
            out_of_time = spent or leg_done
            last = step == t.max_steps or out_of_time
            if val_set and t.eval_every > 0 and (step % t.eval_every == 0 or last):
                if accelerator.is_main_process:
                    record.update(evaluate(unwrap(model), val_set, cfg, device, accelerator))
            if accelerator.is_main_process:
                with _writing(history_path), history_path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                bar.set_postfix(**({"step": step} if timed else {}), loss=f"{record['ce']:.3f}",
                                guide=f"{record['guide']:.3f}")
                bar.update(min(round(minutes * 60), bar_total) - bar.n if timed else 1)
            accelerator.log(record, step=step)
            if step % t.save_every == 0 or last:
                save(step, minutes)
            if out_of_time:
                if accelerator.is_main_process:
                    log.info("stopping at step %d: %s reached%s", step,
                             f"train.leg_minutes={t.leg_minutes}" if leg_done else f"train.max_minutes={t.max_minutes}",
                             "; --resume goes on" if leg_done else "")
                break

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with _writing(out_dir):
            save_model_dir(out_dir, unwrap(model), cfg, codec, val_ids=list(val_set.ids))
    accelerator.end_training()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # Gloo's worker threads outlive a process that exits without this, and crash it in the
        # interpreter's teardown (SIGABRT, "terminate called without an active exception").
        torch.distributed.destroy_process_group()
    return out_dir
