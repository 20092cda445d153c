"""Typed configuration: dataclasses filled from YAML files and `--set a.b=c` overrides.

Several YAML files merge in order (later files win, key by key); unknown keys and values of the
wrong type are errors that name the key. The same `Config` is saved (as JSON) inside every model
directory, so a checkpoint alone is enough to synthesize.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from toktts.errors import TokttsError


@dataclass
class CodecConfig:
    """Which neural codec turns audio into tokens and back."""

    name: str = "mel"  # "mel" (offline, fitted by prepare) or "encodec" (facebook/encodec_24khz)
    n_codebooks: int = 2  # encodec: 2/4/8/16/32 <=> 1.5/3/6/12/24 kbps
    codebook_size: int = 1024
    sample_rate: int = 24000
    frame_rate: int = 75
    pretrained: bool = True  # encodec: False builds the same network with random weights
    model_id: str = "facebook/encodec_24khz"
    n_mels: int = 80  # mel codec
    stack: int = 1  # mel codec: mel frames (at frame_rate * stack Hz) quantised together as one codec frame
    fit_utterances: int = 600  # mel codec: how many training utterances fit the codebooks
    griffin_lim_iters: int = 32  # mel codec decoding
    # mel codec decoding: no log-mel bin may rise more than this (nats) above the louder of its two
    # neighbouring frames. A lone loud frame is a combination of codes no recording has, which
    # Griffin-Lim turns into a click; 0 = off.
    despike: float = 0.5
    seed: int = 0


@dataclass
class DataConfig:
    """Where the corpus is and how `prepare` turns it into a token cache."""

    corpus: str = ""  # an LJSpeech-layout directory: metadata.csv + wavs/
    cache_dir: str = ""  # default: <corpus>/.toktts-cache
    # A token cache directory made by `prepare` (<cache_dir>/<key>), e.g. copied to a GPU machine
    # without the audio: training reads it and neither the corpus nor the key.
    tokens: str = ""
    normalize: bool = True  # run toktts.text.normalize on the transcripts
    val_size: int = 100  # utterances held out for validation (seeded split; at most 10% of the corpus) ...
    val_ids: str = ""  # ... or a file of ids (one per line, `id|text` is fine) to hold out instead
    split_seed: int = 1234
    clip_seconds: float = 0.0  # > 0: keep only the first N seconds of each utterance (old 2 s mode)
    min_seconds: float = 0.2
    max_seconds: float = 20.0  # longer utterances are skipped and counted
    max_text_chars: int = 400
    noise_copies: int = 0  # extra copies of each training utterance with white noise added
    noise_snr_db: float = 30.0
    # A model directory whose fitted mel codec prepare uses instead of fitting one: the tokens
    # must be that model's own to fine-tune it (train.init_from).
    codec_from: str = ""
    encode_batch_seconds: float = 60.0  # audio per codec batch during prepare on a GPU (CPU: one per call)
    shard_size: int = 512  # utterances per cache shard (resume granularity)


TEXT_INPUTS = ("chars", "phonemes")  # what the encoder can read (model.text_input; toktts.phonemes)


@dataclass
class ModelConfig:
    """Encoder-decoder transformer sizes; the vocabulary sizes are filled in from text and codec."""

    layout: str = "delay"  # "delay" (K codebooks per step) or "flatten" (one token per step)
    enc_layers: int = 4
    enc_heads: int = 4
    enc_dim: int = 256
    dec_layers: int = 4
    dec_heads: int = 4
    dec_dim: int = 256
    ff_mult: int = 4
    # Residual 1-D convolutions over the character embeddings before the encoder's attention
    # (Tacotron 2's and Transformer TTS's prenet): local context for spelling-to-sound. 0 = none.
    enc_conv_layers: int = 0
    enc_conv_kernel: int = 5
    dropout: float = 0.1
    # Dropout on the decoder's audio input, kept on at generation (Tacotron's prenet): a noisy
    # past makes the decoder read the text for what comes next.
    input_dropout: float = 0.0
    # Each decoder self-attention layer sees only its last `dec_window` steps, this one included
    # (0 = every earlier step); through dec_layers layers a step hears dec_layers * (dec_window -
    # 1) steps back. Errors made further back fall out of view, and what comes next must come
    # from the text rather than from a long run of the model's own past.
    dec_window: int = 0
    # What the encoder reads: "chars" (toktts's design), or "phonemes" -- espeak-ng's IPA of the
    # same text, a diagnostic that measures how much of the error is spelling-to-sound.
    text_input: str = "chars"
    unconditional: bool = False  # a learned "no text" memory for classifier-free guidance
    ctc_head: bool = False  # a head from decoder states to characters (train.ctc_weight)
    phoneme_head: bool = False  # a head from encoder states to espeak-ng phonemes (train.phoneme_weight)
    phoneme_vocab_size: int = 0  # set from toktts.phonemes when phoneme_head is on
    text_vocab_size: int = 0  # set from the text input's vocabulary (toktts.phonemes.text_vocab)
    n_codebooks: int = 0  # set from the codec
    codebook_size: int = 0  # set from the codec


@dataclass
class TrainConfig:
    """The training loop."""

    output_dir: str = "runs/demo"
    seed: int = 0
    max_steps: int = 10000
    max_minutes: float = 0.0  # > 0: stop (and save) after this much wall-clock time
    # What the learning rate's cosine spans: "steps" (max_steps) or "time" (max_minutes of
    # training, counted across --resume legs: a run given N minutes ends annealed however many
    # steps the machine fits into them; it stops at max_minutes in all or at max_steps).
    schedule: str = "steps"
    # > 0: stop (and save) after this many minutes of this leg, whatever the schedule: a run of
    # schedule=time trains in legs (an hour an evening) and still anneals over max_minutes.
    leg_minutes: float = 0.0
    batch_frames: int = 8000  # token budget: audio frames per batch (before accumulation)
    max_batch_size: int = 64
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 300
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.98
    grad_clip: float = 1.0
    precision: str = "bf16"  # bf16 | fp16 | fp32
    compile: bool = False
    guided_attn_weight: float = 1.0  # alignment help on the first decoder layers' cross-attention
    guided_attn_sigma: float = 0.2
    guided_attn_layers: int = 2
    # Fraction of the decoder's input codes replaced by random codes of the same codebook, so
    # the decoder learns to read the text rather than trust its own past, which at generation
    # time is sampled and imperfect (exposure bias).
    input_noise: float = 0.0
    # 0: those codes are uniformly random; N > 0: each is one of the N codes nearest the true one
    # in its codebook (codes that sound alike: the errors a model that half knows makes); a
    # codebook of N codes or fewer draws from all its other codes.
    input_noise_near: int = 0
    # Fraction of the decoder's input codes replaced by the model's own samples from a no-grad
    # teacher-forced pass (parallel scheduled sampling): the errors it will build on when free.
    self_sampling: float = 0.0
    # Loss weight of each codebook (empty: all 1). Codebook 0 carries the words.
    codebook_weights: list[float] = field(default_factory=list)
    # Fraction of utterances trained without their text (the learned "no text" memory):
    # the unconditional model that classifier-free guidance (generate.cfg_scale) needs.
    text_dropout: float = 0.0
    # Weight of a CTC loss making the decoder's last states spell the text they speak.
    ctc_weight: float = 0.0
    # Weight of a CTC loss making the encoder's states (two per character) say espeak-ng's
    # phonemes of their text: the encoder must learn how each spelling sounds. The model still
    # reads characters; espeak-ng is needed in training only.
    phoneme_weight: float = 0.0
    init_from: str = ""  # a model directory whose weights start a new run (fine-tuning)
    eval_every: int = 250
    eval_batches: int = 8
    save_every: int = 250
    keep_last: int = 2
    log_every: int = 10
    report_to: str = "none"  # none | wandb | tensorboard
    run_name: str = ""
    num_workers: int = 0


@dataclass
class GenerateConfig:
    """Sampling defaults, saved with the model and used by `say`, `samples` and the server."""

    temperature: float = 0.7
    top_k: int = 50
    top_p: float = 1.0
    seed: int | None = None
    max_seconds: float = 30.0  # hard cap on one generation
    seconds_per_char: float = 0.25  # length limit derived from the text: 1 s + len(text) * this
    # No end before len(text) * this seconds (0: none). A voice trained on long sentences may
    # end a short one at once ("hi there." in 0.12 s, 7 seeds in 8, for voice v9).
    min_seconds_per_char: float = 0.0
    # Long text is spoken in chunks of at most this many characters; 0 = the training texts'
    # 75th-percentile length (training writes it here) or 150 for models trained before that.
    chunk_chars: int = 0
    # Speak a chunk cut inside a sentence with a full stop at its end (its pause stays short), as
    # every training text ends: "which he kept concealed in a" ran on past its words, "... in a."
    # stops. Voice v11, 99 held-out sentences, seeds 0 and 1: runaways 5/198 -> 0/198, CER
    # 17.6% -> 15.7% (docs/quality.md, session 13).
    close_chunks: bool = True
    batch_size: int = 8  # chunks generated together
    retries: int = 2  # new seeds for a chunk that runs away or comes out mostly silent
    # Classifier-free guidance: logits u + s (c - u) from the text-conditioned (c) and "no text"
    # (u) passes, batched in one decoder step; 1 = off. Needs a model trained with text_dropout.
    cfg_scale: float = 1.0
    # Takes of every chunk generated in one batch; the one pocketsphinx hears closest to the text
    # is kept (1 = off). Costs N times the generation and an ASR pass per take.
    best_of: int = 1


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _coerce(value: Any, typ: Any, key: str) -> Any:
    """Check (and gently convert) one leaf value against its annotated type."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(typ)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except TokttsError as e:
                errors.append(e)
        raise errors[0]
    if typ is bool:
        if isinstance(value, bool):
            return value
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "2e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif origin is list:
        (item,) = typing.get_args(typ)
        if isinstance(value, str):  # --set train.codebook_weights=4,1,1,1
            value = [v for v in value.split(",") if v.strip()]
        if isinstance(value, (list, tuple)):
            return [_coerce(v, item, key) for v in value]
    elif typ is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    raise TokttsError(f"config key {key!r} must be {_KINDS.get(typ, typ)}, got {value!r}; fix the value")


_KINDS = {bool: "true or false", int: "a whole number", float: "a number", str: "text",
          list[float]: "a list of numbers"}


def _merge(obj: Any, updates: dict[str, Any], prefix: str = "") -> None:
    if not isinstance(updates, dict):
        raise TokttsError(f"config section {prefix.rstrip('.') or '<root>'!r} must be a mapping")
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in updates.items():
        full = f"{prefix}{key}"
        if key not in names:
            close = ", ".join(sorted(names))
            raise TokttsError(f"unknown config key {full!r}; known keys here: {close}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _merge(current, value, full + ".")
        else:
            setattr(obj, key, _coerce(value, hints[key], full))


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise TokttsError(f"--set expects key=value (e.g. train.max_steps=50), got {item!r}")
    key, raw = item.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    return key.strip().split("."), value


# -- allowed values ------------------------------------------------------------------------------

_ANY = None  # an open end of a range


@dataclass(frozen=True)
class Rule:
    """The values a setting takes: a closed range [low, high] (an end may be open; `above` makes
    the low end exclusive, `below` the high end), or a list of choices. `zero` is also allowed
    (e.g. 0 = off)."""

    low: float | None = _ANY
    high: float | None = _ANY
    above: bool = False
    below: bool = False
    choices: tuple = ()
    zero: bool = False
    hint: str = ""  # what the value means, for the error

    def allows(self, value: Any) -> bool:
        if self.choices:
            return value in self.choices
        if isinstance(value, list):
            return all(self.allows(v) for v in value)
        if value is None or (self.zero and value == 0):
            return True
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.above else value < self.low):
            return False
        return self.high is None or (value < self.high if self.below else value <= self.high)

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(map(repr, self.choices))
        lo, hi = self.low, self.high
        if lo is not None and hi is not None:
            if self.above or self.below:
                text = f"in {'(' if self.above else '['}{lo}, {hi}{')' if self.below else ']'}"
            else:
                text = f"from {lo} to {hi}"
        elif lo is not None:
            text = f"> {lo}" if self.above else f">= {lo}"
        else:
            text = f"<= {hi}"
        text = ("0 or " + text) if self.zero else text
        return f"{text} ({self.hint})" if self.hint else text


_FRACTION = Rule(0, 1, below=True, hint="a fraction")
_POSITIVE = Rule(0, above=True)
_COUNT = Rule(1)
_NATURAL = Rule(0)
SEED_RANGE = Rule(0, 2**64 - 1)  # torch's generators take 64 bits

# Every setting that has a limit. Cross-setting checks are in `validate`.
RULES: dict[str, Rule] = {
    "codec.name": Rule(choices=("mel", "encodec")),
    "codec.n_codebooks": Rule(1, 32),
    "codec.codebook_size": Rule(2, 65536),
    "codec.sample_rate": Rule(8000, 192000),
    "codec.frame_rate": Rule(1, 1000),
    "codec.n_mels": Rule(8, 512),
    "codec.stack": Rule(1, 16),
    "codec.fit_utterances": _COUNT,
    "codec.griffin_lim_iters": Rule(1, 1000),
    "codec.despike": Rule(0, 100, hint="nats; 0 = off"),
    "codec.seed": SEED_RANGE,
    "data.val_size": _NATURAL,
    "data.split_seed": SEED_RANGE,
    "data.clip_seconds": _NATURAL,
    "data.min_seconds": _NATURAL,
    "data.max_seconds": _POSITIVE,
    "data.max_text_chars": _COUNT,
    "data.noise_copies": Rule(0, 100),
    "data.noise_snr_db": Rule(-20, 120),
    "data.encode_batch_seconds": _POSITIVE,
    "data.shard_size": _COUNT,
    "model.layout": Rule(choices=("delay", "flatten")),
    "model.enc_layers": Rule(1, 128),
    "model.enc_heads": Rule(1, 256),
    "model.enc_dim": Rule(1, 65536),
    "model.dec_layers": Rule(1, 128),
    "model.dec_heads": Rule(1, 256),
    "model.dec_dim": Rule(1, 65536),
    "model.ff_mult": Rule(1, 64),
    "model.enc_conv_layers": Rule(0, 32),
    "model.enc_conv_kernel": Rule(1, 31),
    "model.dropout": _FRACTION,
    "model.input_dropout": _FRACTION,
    "model.dec_window": Rule(1, 1_000_000, zero=True, hint="0 = every earlier step"),
    "model.text_input": Rule(choices=TEXT_INPUTS),
    "model.text_vocab_size": _NATURAL,
    "model.phoneme_vocab_size": _NATURAL,
    "model.n_codebooks": _NATURAL,
    "model.codebook_size": _NATURAL,
    "train.seed": SEED_RANGE,
    "train.max_steps": _COUNT,
    "train.max_minutes": Rule(0, hint="0 = no time limit"),
    "train.schedule": Rule(choices=("steps", "time")),
    "train.leg_minutes": Rule(0, hint="0 = no limit per leg"),
    "train.batch_frames": _COUNT,
    "train.max_batch_size": _COUNT,
    "train.grad_accum": Rule(1, 1024),
    "train.lr": Rule(0, 10, above=True),
    "train.min_lr_ratio": Rule(0, 1),
    "train.warmup_steps": _NATURAL,
    "train.weight_decay": Rule(0, 10),
    "train.beta1": Rule(0, 1, below=True),
    "train.beta2": Rule(0, 1, below=True),
    "train.grad_clip": Rule(0, hint="0 = off"),
    "train.precision": Rule(choices=("bf16", "fp16", "fp32")),
    "train.guided_attn_weight": _NATURAL,
    "train.guided_attn_sigma": _POSITIVE,
    "train.guided_attn_layers": _NATURAL,
    "train.input_noise": _FRACTION,
    "train.input_noise_near": Rule(0, hint="0 = uniformly random codes"),
    "train.self_sampling": _FRACTION,
    "train.codebook_weights": Rule(0, 1000),
    "train.text_dropout": _FRACTION,
    "train.ctc_weight": Rule(0, 100),
    "train.phoneme_weight": Rule(0, 100),
    "train.eval_every": Rule(0, hint="0 = never"),
    "train.eval_batches": _COUNT,
    "train.save_every": _COUNT,
    "train.keep_last": _COUNT,
    "train.log_every": _COUNT,
    "train.report_to": Rule(choices=("none", "", "wandb", "tensorboard")),
    "train.num_workers": Rule(0, 64),
    "generate.temperature": Rule(1e-3, 100, zero=True, hint="0 = greedy"),
    "generate.top_k": Rule(0, hint="0 = off"),
    "generate.top_p": Rule(0, 1, above=True),
    "generate.seed": SEED_RANGE,
    "generate.max_seconds": Rule(0, 600, above=True),
    "generate.seconds_per_char": Rule(0, 10, above=True),
    "generate.min_seconds_per_char": Rule(0, 1),
    "generate.chunk_chars": Rule(8, 100_000, zero=True, hint="0 = from the training texts"),
    "generate.batch_size": Rule(1, 256),
    "generate.retries": Rule(0, 16),
    "generate.cfg_scale": Rule(0, 10, hint="1 = no guidance"),
    "generate.best_of": Rule(1, 16),
}


class BadValue(TokttsError):
    """A value outside what its setting takes; `name` says which setting (an API argument, a
    request field, a config key)."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


@functools.cache
def _hints(section: type) -> dict[str, Any]:
    """A config section's field types (resolving them costs ~0.1 ms, and synthesis checks its
    options on every call)."""
    return typing.get_type_hints(section)


def check_value(key: str, value: Any, name: str | None = None) -> Any:
    """Check one value against RULES[key] (type first: whole numbers where the setting is an
    int); returns it. Raises BadValue naming `name` (default: the key)."""
    name = name or key
    section, field_name = key.split(".")
    typ = _hints(_SECTIONS[section])[field_name]
    try:
        value = _coerce(value, typ, name)
    except TokttsError as e:
        raise BadValue(name, str(e).replace(f"config key {name!r}", name).replace("; fix the value", "")) from None
    rule = RULES.get(key)
    if rule is not None and not rule.allows(value):
        raise BadValue(name, f"{name} must be {rule.describe()}, got {value!r}")
    return value


# The keyword arguments of synthesis and the settings whose rules (toktts.config.RULES) they follow.
OPTIONS = {
    "temperature": "generate.temperature", "top_k": "generate.top_k", "top_p": "generate.top_p",
    "cfg_scale": "generate.cfg_scale", "seed": "generate.seed", "max_seconds": "generate.max_seconds",
    "best_of": "generate.best_of", "retries": "generate.retries",
}


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """Synthesis keyword arguments -> the same, checked (None = the model's default); a BadValue
    naming the argument otherwise. `seed` may be a list (one per text)."""
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise TokttsError(f"unknown synthesis option(s) {sorted(unknown)}; use {', '.join(OPTIONS)}, verify")
    checked = {}
    for name, value in options.items():
        if name == "seed" and isinstance(value, (list, tuple)):
            checked[name] = [check_value(OPTIONS[name], v, name) for v in value]
        else:
            checked[name] = None if value is None else check_value(OPTIONS[name], value, name)
    return checked


def validate(cfg: "Config", sections: tuple[str, ...] | None = None) -> "Config":
    """Every setting (of `sections`, default all) in its range and the settings consistent with
    each other; returns cfg."""
    for section in dataclasses.fields(cfg):
        if sections is not None and section.name not in sections:
            continue
        part = getattr(cfg, section.name)
        for f in dataclasses.fields(part):
            key = f"{section.name}.{f.name}"
            try:
                check_value(key, getattr(part, f.name))
            except BadValue as e:
                raise BadValue(key, f"config {e}; fix the value") from None
    m, t = cfg.model, cfg.train
    checked = set(sections or _SECTIONS)
    for side in ("enc", "dec"):
        dim, heads = getattr(m, f"{side}_dim"), getattr(m, f"{side}_heads")
        if dim % heads:
            raise BadValue(f"model.{side}_heads", f"config model.{side}_dim ({dim}) must be a multiple of "
                           f"model.{side}_heads ({heads}); change one of them")
    if m.enc_conv_kernel % 2 == 0:
        raise BadValue("model.enc_conv_kernel", f"config model.enc_conv_kernel ({m.enc_conv_kernel}) must be odd "
                       "(centred on its character); use e.g. 5")
    if "train" in checked and t.codebook_weights:
        if m.layout != "delay":
            raise BadValue("train.codebook_weights", "config train.codebook_weights needs model.layout=delay "
                           "(one stream per codebook)")
        n = cfg.codec.n_codebooks
        if len(t.codebook_weights) != n or sum(t.codebook_weights) <= 0:
            raise BadValue("train.codebook_weights", f"config train.codebook_weights needs {n} weights >= 0, "
                           f"not all 0 (one per codebook), got {t.codebook_weights}")
    if "train" in checked and t.schedule == "time" and not t.max_minutes:
        raise BadValue("train.schedule", "config train.schedule=time anneals over train.max_minutes, which is 0; "
                       "give train.max_minutes or use train.schedule=steps")
    if "train" in checked and t.self_sampling > 0 and m.layout != "delay":
        raise BadValue("train.self_sampling", "config train.self_sampling needs model.layout=delay")
    if "data" in checked and cfg.data.min_seconds >= cfg.data.max_seconds:
        raise BadValue("data.min_seconds", f"config data.min_seconds ({cfg.data.min_seconds}) must be below "
                       f"data.max_seconds ({cfg.data.max_seconds})")
    return cfg


def load_config(paths: list[str | Path] | None = None, overrides: list[str] | None = None) -> Config:
    """Build a Config from YAML files (merged in order) and `a.b=c` overrides (applied last)."""
    cfg = Config()
    for path in paths or []:
        path = Path(path)
        if not path.is_file():
            raise TokttsError(f"config file {str(path)!r} not found; pass an existing YAML file")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as e:
            raise TokttsError(f"config file {str(path)!r} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
        except yaml.YAMLError as e:
            raise TokttsError(f"config file {str(path)!r} is not valid YAML: {e}".splitlines()[0])
        _merge(cfg, data)
    for item in overrides or []:
        keys, value = _parse_override(item)
        nested: Any = value
        for key in reversed(keys):
            nested = {key: nested}
        _merge(cfg, nested)
    return validate(cfg)


def config_from_dict(data: dict[str, Any], sections: tuple[str, ...] | None = None) -> Config:
    """A Config from a dict (e.g. a model directory's config.json), its `sections` (default all)
    checked against RULES."""
    cfg = Config()
    _merge(cfg, data)
    return validate(cfg, sections)


_SECTIONS = typing.get_type_hints(Config)
