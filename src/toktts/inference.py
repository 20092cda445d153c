"""`TTS`: the one inference facade, used by the CLI, the server, the evaluation and the tests.

    from toktts import TTS
    tts = TTS.from_pretrained("runs/demo")          # or no argument: the bundled voice
    out = tts("Hello there.", temperature=0.7, seed=0)
    out["audio"], out["sampling_rate"], out["stop_reason"]   # float32 mono, int, "eos"|"max_length"
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from toktts.audio import limit
from toktts.checkpoint import held_out_ids, load_model_dir, save_model_dir
from toktts.codecs import Codec
from toktts.config import BadValue, Config, check_options
from toktts.devices import autocast, check_threads, num_threads, resolve_device
from toktts.errors import TokttsError
from toktts.files import writing
from toktts.longform import DEFAULT_CHUNK_CHARS, FrameDecoder, Trimmer, split_text
from toktts.model import Progress, TokTTS
from toktts.phonemes import encode_texts
from toktts import ssml
from toktts.ssml import Part
from toktts.text import Lexicon
from toktts.voices import bundled_voice_dir

log = logging.getLogger(__name__)

class TTS:
    """A trained toktts model with its codec and text settings."""

    def __init__(
        self, model: TokTTS, cfg: Config, codec: Codec, device: torch.device, precision: str | None = None,
        threads: int | None = None, backend: str | None = None, model_dir: str | Path | None = None,
    ):
        self.cfg, self.codec, self.device = cfg, codec, device
        self.model_dir = Path(model_dir) if model_dir is not None else None
        # Decoding multiplies one row at a time; oneDNN's bf16 path for such small matmuls is
        # far slower than fp32 on CPU (measured ~50 us fp32 vs ~10 ms bf16 for a 1x256x1024
        # linear), while GPUs gain from bf16.
        self.precision = precision or ("bf16" if device.type == "cuda" else "fp32")
        if self.precision not in PRECISIONS:
            raise TokttsError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.precision == "int8" and device.type != "cpu":
            raise TokttsError("precision int8 is for CPUs; use bf16 on a GPU")
        self.float_model = model  # what save_pretrained writes
        self.model = quantized(model) if self.precision == "int8" else model
        # A decoder step is ~40 small ops; each parallel op on 2 threads waits for the second
        # core, and when anything else runs on the machine a step went from 3.5 ms to 150 ms
        # (benchmarks/RESULTS.md). Griffin-Lim decoding likewise: 0.29 s on one thread, 0.52 s
        # on two, for 4.6 s of speech with the other core busy (2-core EPYC). So on CPU every
        # stage of synthesis runs on one thread unless `threads` says otherwise.
        self.threads: int | None = check_threads(threads) or (1 if device.type == "cpu" else None)
        self.lexicon: Lexicon | None = None  # respellings applied before normalisation (`use_lexicon`)
        self.sampling_rate = codec.sample_rate
        self._asked_backend = backend or "auto"
        self.backend = self._choose_backend(self._asked_backend)
        self._onnx: Any = None  # the OnnxDecoder, made on first use
        # What the int8 copy and the ONNX graph were made from (a graph sets it when it is made).
        self._weights = _weights_state(model.decoder) if self.precision == "int8" else ()

    def _choose_backend(self, backend: str) -> str:
        """"torch" or "onnx" (ONNX Runtime runs the decoder steps of batches of up to
        ONNX_MAX_ROWS rows, where it is faster): `auto` is onnx on a CPU in fp32 or int8 where
        `toktts[onnx]` is installed -- in fp32 the same tokens as torch (benchmarks/RESULTS.md)."""
        from toktts import onnx_decoder

        if backend not in BACKENDS:
            raise TokttsError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        fits = self.device.type == "cpu" and self.precision in ("fp32", "int8")
        if backend == "onnx":
            if not fits:
                raise TokttsError(f"backend onnx runs fp32 or int8 on a CPU, not {self.precision} on {self.device}; "
                                  "use backend torch (--backend torch) or --precision fp32 on the CPU")
            if not onnx_decoder.available():
                raise TokttsError("backend onnx needs onnx and onnxruntime (pip install 'toktts[onnx]'); "
                                  "or use --backend torch")
        if backend == "auto":
            return "onnx" if fits and onnx_decoder.available() else "torch"
        return backend

    def _follow_weights(self) -> None:
        """The int8 copy and the ONNX step graph hold the decoder's weights they were made from;
        when those have changed in place since (a training step, `load_state_dict`), they
        are made again, so a TTS always speaks with the weights its model has now."""
        if self.precision != "int8" and self._onnx is None:
            return  # nothing made from the weights (a graph made later is made from the current ones)
        now = _weights_state(self.float_model.decoder)
        if now == self._weights:
            return
        self._weights = now
        self._onnx = None
        if self.precision == "int8":
            self.model = quantized(self.float_model)

    def _step_decoder(self) -> Any:
        """What runs the decoder steps: None (the model's own) or the ONNX Runtime one, made on
        first use. Under `auto`, a graph that cannot be made is reported once and the eager
        decoder used; asking for `onnx` makes it an error."""
        if self.backend != "onnx":
            return None
        if self._onnx is None:
            from toktts import onnx_decoder

            try:
                decoder = self.float_model.decoder  # embeds the inputs and the memory's keys in fp32
                path = onnx_decoder.find_or_export(decoder, self.model_dir, self.precision)
                self._onnx = onnx_decoder.OnnxDecoder(decoder, path, self.threads)
                self._weights = _weights_state(self.float_model.decoder)
            except TokttsError as e:  # the export's and ONNX Runtime's failures, as one line
                if self._asked_backend == "onnx":
                    raise
                log.warning("%s; synthesis runs in PyTorch", e)
                self.backend = "torch"
                return None
        return self._onnx

    @classmethod
    def from_pretrained(
        cls, path: str | Path | None = None, device: str | None = None, precision: str | None = None,
        threads: int | None = None, backend: str | None = None,
    ) -> "TTS":
        """Load a model directory, a Hub repo id (`user/name`), or the bundled voice (no path).
        `threads`: CPU threads for synthesis (default on CPU: 1, the fastest where anything else
        runs; see __init__). `backend`: what runs the decoder steps, "torch", "onnx" (ONNX
        Runtime) or "auto" (the default: onnx on a CPU in fp32 or int8 where it is installed)."""
        if path is None:
            path = bundled_voice_dir()
            if not (path / "config.json").is_file():
                raise TokttsError("this install has no bundled voice; pass a model directory (--model DIR)")
        path = Path(path)
        if not path.exists() and len(path.parts) == 2 and not str(path).startswith((".", "/")):
            path = _download_from_hub(str(path))
        dev = resolve_device(device)
        model, cfg, codec = load_model_dir(path, dev)
        return cls(model, cfg, codec, dev, precision, threads, backend, model_dir=path)

    def save_pretrained(self, directory: str | Path, dtype: str = "fp32") -> Path:
        """Write the model directory; dtype "bf16"/"fp16" halve the weights and "int8" quarters
        them (per-row scales; e.g. for shipping a voice). Loading always gives fp32."""
        dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": "int8"}
        if dtype not in dtypes:
            raise TokttsError(f"dtype must be one of {', '.join(dtypes)}, got {dtype!r}")
        with writing(directory, "choose another directory"):
            return save_model_dir(directory, self.float_model, self.cfg, self.codec, dtype=dtypes[dtype],
                                  val_ids=held_out_ids(self.model_dir) if self.model_dir else None)

    def push_to_hub(self, repo_id: str, private: bool = False, token: str | None = None) -> str:
        """Upload the model directory to the Hugging Face Hub; returns the repo URL."""
        import tempfile

        from huggingface_hub import HfApi

        api = HfApi(token=token)
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            api.create_repo(repo_id, private=private, exist_ok=True)
            api.upload_folder(folder_path=tmp, repo_id=repo_id)
        return f"https://huggingface.co/{repo_id}"

    # -- text -------------------------------------------------------------------------------

    def use_lexicon(self, lexicon: Lexicon | dict[str, str] | str | Path | None) -> "TTS":
        """Say words as respelled: a `Lexicon`, a dict {word: respelling}, or a lexicon file
        (one `word respelling` per line); None removes it. Returns self."""
        if lexicon is None or isinstance(lexicon, Lexicon):
            self.lexicon = lexicon
        elif isinstance(lexicon, dict):
            self.lexicon = Lexicon(lexicon)
        elif isinstance(lexicon, (str, Path)):
            self.lexicon = Lexicon.from_file(lexicon)
        else:
            raise TokttsError(f"a lexicon is a dict, a file path or a Lexicon, got {type(lexicon).__name__}")
        return self

    def spoken_parts(self, text: str) -> list[Part]:
        """What the model will read (`toktts.ssml.read`: SSML, this model's lexicon, normalisation)."""
        return ssml.read(text, self.lexicon, normalise=self.cfg.data.normalize)

    def prepare_text(self, text: str) -> str:
        """The text as the model reads it (see `spoken_parts`), its parts joined."""
        return " ".join(part.text for part in self.spoken_parts(text))

    def max_steps(self, text: str, max_seconds: float | None = None) -> int:
        """The decoder-step limit for a text: 1 s + seconds_per_char per character, capped."""
        g = self.cfg.generate
        cap = g.max_seconds if max_seconds is None else max_seconds
        seconds = min(1.0 + g.seconds_per_char * len(text), cap)
        frames = max(1, int(seconds * self.codec.frame_rate))
        layout = self.model.layout
        return layout.n_steps(frames) - layout.tail

    def min_steps(self, text: str, limit: int) -> int:
        """The first decoder step at which the text may end: generate.min_seconds_per_char per
        character, below its limit."""
        frames = int(self.cfg.generate.min_seconds_per_char * len(text) * self.codec.frame_rate)
        return min(frames, limit - 1)

    # -- synthesis --------------------------------------------------------------------------

    def __call__(self, text: str, **kwargs: Any) -> dict[str, Any]:
        """Synthesize a text of any length. Keyword arguments: temperature, top_k, top_p, seed,
        max_seconds (per chunk), retries, verify, progress. A text of which every take of every
        chunk came out silent is a `TokttsError`, not a result without audio."""
        result = self.synthesize([text], **kwargs)[0]
        require_voiced(result["chunks"], text, kwargs.get("seed"))
        return result

    def synthesize(
        self,
        texts: list[str],
        retries: int | None = None,
        verify: bool = False,
        progress: bool = False,
        **sampling: Any,
    ) -> list[dict[str, Any]]:
        """Synthesize texts of any length; one result per text. `seed` (in `sampling`) is one for
        all texts or a list with one per text; a text's audio does not depend on its batch.

        Each text is normalised and cut into chunks (`toktts.longform`); chunks of all the texts
        are generated in batches, and a chunk that runs away (hits its length limit) or comes
        out mostly silent is generated again with another seed, at most `retries` times. With
        `verify`, a chunk whose ASR transcript is far from its text is retried too. A result
        holds the joined `audio`, `sampling_rate`, `stop_reason` ("eos" when every chunk ended
        by itself, else "max_length"), the normalised `text`, and per chunk a report."""
        if isinstance(texts, str):
            texts = [texts]
        options = check_options({**sampling, "retries": retries})
        jobs = self._jobs(texts, options.get("seed"))
        run = _Run(self, jobs, options, verify, live=False, progress=progress)
        audio: list[list[np.ndarray]] = [[] for _ in texts]
        for owner, samples in run.events():
            audio[owner].append(samples)
        results = []
        for owner, text in enumerate(texts):
            reports = [r for job, r in zip(jobs, run.reports) if job.owner == owner]
            wav = np.concatenate(audio[owner]) if audio[owner] else np.zeros(0, np.float32)
            results.append(_result(wav, self.sampling_rate, reports))
        return results

    def stream(
        self,
        text: str,
        retries: int | None = None,
        verify: bool = False,
        should_stop: Callable[[], bool] | None = None,
        **sampling: Any,
    ) -> "AudioStream":
        """Synthesize `text`, yielding float32 audio pieces as soon as they are ready: within the
        first chunk of every batch as frames are generated, then chunk by chunk. The pieces join
        into the same audio as `tts(text)` with the same seed, unless a chunk given out as it was
        generated turns out to need a retry (it ran away): what is already played cannot be
        redone, so it is reported instead. A live chunk of which nothing was given out (all
        silence) is retried as in `tts(text)`.
        `should_stop` is asked before every decoder step; True ends the stream there (e.g. a
        client that hung up)."""
        options = check_options({**sampling, "retries": retries})
        jobs = self._jobs([text], options.get("seed"))
        run = _Run(self, jobs, options, verify, live=True, progress=False, should_stop=should_stop)
        return AudioStream(run)

    def _jobs(self, texts: list[str], seed: int | list[int | None] | None) -> list["_Job"]:
        """Chunk every text; chunk i of a text seeded s is seeded s + i, whatever its batch."""
        seeds = list(seed) if isinstance(seed, (list, tuple)) else [seed] * len(texts)
        if len(seeds) != len(texts):
            raise TokttsError(f"got {len(seeds)} seeds for {len(texts)} texts; give one seed, or one per text")
        max_chars = self.cfg.generate.chunk_chars or DEFAULT_CHUNK_CHARS
        jobs = []
        for owner, (text, text_seed) in enumerate(zip(texts, seeds)):
            text_seed = self.cfg.generate.seed if text_seed is None else text_seed
            chunks = []
            for part in self.spoken_parts(text):
                pieces = split_text(part.text, max_chars, close=self.cfg.generate.close_chunks)
                if part.pause is not None:  # an SSML break or sentence: its pause, not the punctuation's
                    pieces[-1] = replace(pieces[-1], pause=part.pause)
                chunks += pieces
            for index, chunk in enumerate(chunks):
                pause = chunk.pause if index < len(chunks) - 1 else 0.0
                jobs.append(_Job(owner, index, chunk.text, pause, None if text_seed is None else _fold(text_seed + index)))
        return jobs

    def generate_tokens(
        self,
        texts: list[str],
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | list[int | None] | None = None,
        max_seconds: float | None = None,
        need_weights: bool = False,
        steps: bool = False,
        cfg_scale: float | None = None,
    ) -> tuple[list[str], Any]:
        """Normalise and batch the texts and sample their codec tokens (no audio decoding).

        `seed` is one for the batch or one per text (then each text's tokens do not depend on
        what it is batched with). Returns the spoken texts and `TokTTS.generate`'s dict, or with
        `steps` an iterator over its `Progress` after each decoder step."""
        options = check_options(dict(temperature=temperature, top_k=top_k, top_p=top_p, cfg_scale=cfg_scale,
                                     seed=seed, max_seconds=max_seconds))
        seed, max_seconds = options.pop("seed"), options.pop("max_seconds")
        g = replace(self.cfg.generate, **{k: v for k, v in options.items() if v is not None})
        self._follow_weights()
        if g.cfg_scale != 1.0 and self.model.null_memory is None:
            raise BadValue("cfg_scale", f"cfg_scale {g.cfg_scale} needs a model trained with train.text_dropout > 0; "
                           "this one was not: use cfg_scale=1")
        seed = g.seed if seed is None else seed
        spoken = [self.prepare_text(t) for t in texts]
        text, lengths = self._text_batch(spoken)
        limits = torch.tensor([self.max_steps(s, max_seconds) for s in spoken])
        floors = torch.tensor([self.min_steps(s, int(n)) for s, n in zip(spoken, limits)]) if g.min_seconds_per_char else None
        if isinstance(seed, (list, tuple)) and any(s is not None for s in seed):
            generator = [None if s is None else torch.Generator(self.device).manual_seed(int(s)) for s in seed]
        else:
            generator = None if seed is None or isinstance(seed, (list, tuple)) else torch.Generator(self.device).manual_seed(int(seed))
        args = (text, lengths, limits.to(self.device))
        rows = len(texts) * (2 if g.cfg_scale != 1.0 else 1)  # a guided batch has a row without the text
        kwargs = dict(temperature=g.temperature, top_k=g.top_k, top_p=g.top_p, generator=generator,
                      need_weights=need_weights, cfg_scale=g.cfg_scale, min_steps=None if floors is None else floors.to(self.device),
                      decoder=self._step_decoder() if rows <= ONNX_MAX_ROWS else None)
        if steps:
            return spoken, self._steps(args, kwargs)
        with autocast(self.device, self.precision), num_threads(self.threads):
            return spoken, self.model.generate(*args, **kwargs)

    def _text_batch(self, spoken: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised texts -> (B, L) padded ids of what the model reads (characters or
        phonemes) and (B,) lengths, on the device."""
        ids = encode_texts(spoken, self.cfg.model.text_input)
        empty = [s for s, row in zip(spoken, ids) if not row]
        if empty:
            raise TokttsError(f"nothing to read in {empty[0]!r} as {self.cfg.model.text_input}; give words to say")
        text = torch.zeros(len(ids), max(map(len, ids)), dtype=torch.long)
        for b, row in enumerate(ids):
            text[b, : len(row)] = torch.tensor(row)
        return text.to(self.device), torch.tensor([len(r) for r in ids], device=self.device)

    def teacher_forced(self, spoken: list[str], codes: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """The model's first-ranked tokens (B, N, S) at every step of real audio -- (B, K, T) codes,
        (B,) frame counts -- when the past it reads is the real one (see `TokTTS.predict`)."""
        self._follow_weights()
        text, lengths = self._text_batch(spoken)
        tokens = self.model.layout.tokens(codes.to(self.device), frames.to(self.device))
        with autocast(self.device, self.precision):
            return self.model.predict(text, lengths, tokens)

    def _steps(self, args: tuple, kwargs: dict) -> Iterator[Progress]:
        # The contexts are entered around each step only: between steps the caller decodes audio
        # outside autocast, exactly as after a whole generation (on a GPU this re-casts the
        # weights to bf16 every step, a small cost next to a step; only streaming comes here).
        steps = self.model.generate_steps(*args, **kwargs)
        while True:
            with autocast(self.device, self.precision), num_threads(self.threads):
                progress = next(steps, None)
            if progress is None:
                return
            yield progress

    def decode(self, tokens: torch.Tensor, frames: torch.Tensor) -> list[np.ndarray]:
        """(B, N, S) tokens and (B,) frame counts -> one waveform per item, decoded whole."""
        layout = self.model.layout
        codes = layout.codes(tokens)  # (B, K, T)
        T = max(int(frames.max()), 1)
        codes = codes[:, :, :T]
        with torch.inference_mode(), num_threads(self.threads):
            audio = self.codec.decode(codes, frames).float().cpu().numpy()
        hop = self.codec.sample_rate // self.codec.frame_rate
        return [audio[b, : int(frames[b]) * hop] for b in range(len(audio))]


PRECISIONS = ("fp32", "bf16", "fp16", "int8")
BACKENDS = ("auto", "torch", "onnx")
# The ONNX step graph writes each step's keys and values into the past in place (since
# 2026-12-03; before, it copied every layer's past each step and lost to eager PyTorch past 32
# rows), so it stays ahead at every batch measured. The bundled voice's size in fp32 (the same
# tokens), one thread, guided (2 rows a text), ms a step torch / onnx (2-core AMD EPYC,
# 2026-12-03): 1 text 4.3 / 1.9, 8 texts 11.6 / 7.3, 16 texts 18.4 / 13.4, 24 texts 23.3 / 16.6,
# 32 texts 29.6 / 24.1, 64 texts 57.2 / 44.2; int8 32 texts 19.1 / 18.6, 64 texts 41.1 / 40.2.
# Larger batches, not measured, run eagerly.
ONNX_MAX_ROWS = 128


def _weights_state(model: torch.nn.Module) -> tuple:
    """Changes when a parameter or buffer of `model` is replaced or written in place: each
    tensor's storage and version counter (which in-place ops bump), and sums over a strided
    sample of its values, which change where the counter does not (the fused optimizer kernel
    that training uses, writes through `.data`): a training step moves every weight."""
    tensors = [*model.parameters(), *model.buffers()]
    with torch.no_grad():  # one sum over all the samples: a moved weight moves it (one op, not three a tensor)
        samples = [t.detach().reshape(-1)[:: max(1, t.numel() // 64)] for t in tensors]
        total = float(torch.cat(samples).double().sum()) if samples else 0.0
    # (inference tensors have no version counter)
    return tuple((t.data_ptr(), -1 if t.is_inference() else t._version) for t in tensors), total


def quantized(model: TokTTS) -> TokTTS:
    """A copy of `model` whose decoder's linear layers multiply in int8 (weights quantized per
    row, activations per step: torch's dynamic quantization). At batch 1 on a CPU a decoder step
    reads every weight once, so it is bound by memory bandwidth, and int8 weights read 4x fewer
    bytes: 6.4 -> 3.2 ms a step for the bundled voice with guidance (2-core EPYC, one thread),
    CER unchanged (docs/quality.md). Opt-in: activations are quantized with one scale per
    batch, so a take then depends slightly on what it is batched with."""
    import copy
    import warnings

    from torch.ao.quantization import quantize_dynamic

    fast = copy.copy(model)  # shares the encoder and everything else
    fast._modules = dict(model._modules)
    with warnings.catch_warnings():  # (the eager API's deprecation notice; it is what runs here)
        warnings.simplefilter("ignore")
        fast._modules["decoder"] = quantize_dynamic(model.decoder, {torch.nn.Linear}, dtype=torch.qint8)
    return fast


MIN_VOICED_FRACTION = 0.3  # a chunk with less speech than this is "mostly silence": retried
VERIFY_MAX_CER = 0.5  # with verify, a chunk whose transcript misses more characters is retried
RETRY_SEED_STRIDE = 100_003  # attempt a of a chunk seeded `seed` uses seed + a * stride


@dataclass
class _Job:
    """One chunk of one text to speak."""

    owner: int  # which text
    index: int  # which chunk of it
    text: str
    pause: float  # silence after it (0 for a text's last chunk)
    seed: int | None

    def seed_for(self, attempt: int) -> int | None:
        return None if self.seed is None else _fold(self.seed + attempt * RETRY_SEED_STRIDE)


def _fold(seed: int) -> int:
    """Seeds derived from a user's seed (chunk index, retry) stay within torch's 64 bits."""
    return seed % 2**64


class _Run:
    """Speaks a list of chunk jobs batch by batch, yielding (owner, audio) pieces in reading order
    and filling `reports` (one per job). With `live`, the first chunk of each batch is decoded
    and yielded while it is generated."""

    def __init__(self, tts: TTS, jobs: list[_Job], options: dict, verify: bool, live: bool, progress: bool,
                 should_stop: Callable[[], bool] | None = None):
        if not isinstance(verify, bool):
            raise TokttsError(f"verify must be True or False, got {verify!r}")
        self.tts, self.jobs, self.live = tts, jobs, live
        self.should_stop = should_stop or (lambda: False)
        g = tts.cfg.generate
        options = dict(options)  # checked by check_options
        retries, best_of = options.pop("retries"), options.pop("best_of", None)
        self.retries = g.retries if retries is None else retries
        self.best_of = g.best_of if best_of is None else best_of
        self.sampling = {k: v for k, v in options.items() if k != "seed"}
        self.asr, self.verify = None, verify
        if verify or self.best_of > 1:
            from toktts.asr import PocketSphinx

            self.asr = PocketSphinx(jobs=1)
        self.reports: list[dict | None] = [None] * len(jobs)
        self.bar = None
        if progress and len(jobs) > 1:
            from tqdm import tqdm

            self.bar = tqdm(total=len(jobs), unit="chunk", desc="say", leave=False)

    def events(self) -> Iterator[tuple[int, np.ndarray]]:
        size = max(1, self.tts.cfg.generate.batch_size)
        try:
            for start in range(0, len(self.jobs), size):
                yield from self._batch(list(range(start, min(start + size, len(self.jobs)))))
        finally:
            if self.bar is not None:
                self.bar.close()

    def _batch(self, rows: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        tts, layout = self.tts, self.tts.model.layout
        texts, seeds = [self.jobs[r].text for r in rows], [self.jobs[r].seed_for(0) for r in rows]
        first, live, n = self.jobs[rows[0]], None, self.best_of
        attempts, heard, given = {}, False, 0  # heard: some of the live chunk was given out (`given` samples)
        if self.live and n == 1:
            # Step by step: the first chunk is decoded and given out while the batch is generated.
            _, steps = tts.generate_tokens(texts, seed=seeds, steps=True, **self.sampling)
            live = _Voice(tts)
            for progress in steps:
                if self.should_stop():
                    steps.close()
                    return
                if live.final:
                    continue
                done = bool(progress.done[0])
                ready = int(progress.frames_ready()[0])
                if ready > live.frames or done:
                    codes = layout.codes(progress.tokens[:1], ready)[0]  # (K, ready)
                    piece = live.feed(codes, final=done)
                    if len(piece):
                        heard, given = True, given + len(piece)
                        yield first.owner, piece
            result = progress.result()
            for b, r in enumerate(rows):
                attempts[r] = self._judge_item(result, b, r, attempt=0, voice=live if b == 0 else None)
            if not heard:  # e.g. all silence: retried like the others if it must be
                attempts[rows[0]]["audio"] = np.zeros(0, np.float32)
        else:
            # best_of candidates of every chunk in one batch (candidate j is attempt j's seed);
            # the ASR's transcript closest to the text wins.
            tries = [(r, j) for j in range(n) for r in rows]
            _, result = tts.generate_tokens(
                [self.jobs[r].text for r, _ in tries], seed=[self.jobs[r].seed_for(j) for r, j in tries],
                **self.sampling,
            )
            for b, (r, j) in enumerate(tries):
                judged = self._judge_item(result, b, r, attempt=j)
                if r not in attempts or judged["score"] > attempts[r]["score"]:
                    attempts[r] = judged
            if self.should_stop():
                return
        # Retry what failed, all together, with new seeds; not a live chunk already heard.
        for attempt in range(n, n + self.retries):
            again = [r for r in rows if not attempts[r]["ok"] and not (heard and r == rows[0])]
            if not again or self.should_stop():
                break
            _, result = tts.generate_tokens(
                [self.jobs[r].text for r in again], seed=[self.jobs[r].seed_for(attempt) for r in again],
                **self.sampling,
            )
            for b, r in enumerate(again):
                judged = self._judge_item(result, b, r, attempt)
                if judged["score"] > attempts[r]["score"]:
                    attempts[r] = judged
                attempts[r]["retries"] = attempt - n + 1
        for b, r in enumerate(rows):
            job, best = self.jobs[r], attempts[r]
            if not best["ok"]:
                log.warning("chunk %d of text %d still %s after %d retries: %r",
                            job.index, job.owner, best["problem"], best["retries"], job.text[:60])
            if not (heard and b == 0):
                yield job.owner, best["audio"]
            if job.pause:
                yield job.owner, np.zeros(round(job.pause * tts.sampling_rate), np.float32)
            self.reports[r] = {k: v for k, v in best.items() if k not in ("audio", "score")}
            self.reports[r]["samples"] = given if heard and b == 0 else len(best["audio"])  # 0: only silence
            if self.bar is not None:
                self.bar.update(1)

    def _judge_item(self, result: dict, b: int, r: int, attempt: int, voice: "_Voice | None" = None) -> dict:
        """`_judge` item b of a generation `result` as attempt `attempt` at job r (decoded whole
        unless its `voice` was already fed live)."""
        codes = self.tts.model.layout.codes(result["tokens"][b : b + 1], int(result["frames"][b]))[0]  # (K, T)
        voice = voice if voice is not None else _Voice(self.tts).whole(codes)
        return self._judge(r, codes, bool(result["stopped"][b]), voice, attempt)

    def _judge(self, r: int, codes: torch.Tensor, stopped: bool, voice: "_Voice", attempt: int) -> dict:
        """How one attempt at a chunk went; `score` orders attempts (higher is better)."""
        job = self.jobs[r]
        problem = None if stopped else "ran to its length limit"
        if problem is None and voice.trimmer.voiced_fraction < MIN_VOICED_FRACTION:
            problem = f"mostly silent ({voice.trimmer.voiced_fraction:.0%} voiced)"
        cer = None
        if self.asr is not None and voice.audio is not None:
            from toktts.asr import error_rates, score_text

            heard = score_text(self.asr.transcribe_audio(voice.audio, self.tts.sampling_rate))
            cer = error_rates([score_text(job.text)], [heard])[0]
            if self.verify and problem is None and cer > VERIFY_MAX_CER:
                problem = f"misheard (CER {cer:.0%})"
        return {
            "text": job.text, "stop_reason": "eos" if stopped else "max_length", "ok": problem is None,
            "problem": problem, "retries": attempt, "seed": job.seed_for(attempt), "frames": codes.shape[1],
            "codes": codes.cpu(), "voiced_fraction": voice.trimmer.voiced_fraction, "cer": cer,
            # The last tie-break: of takes alike so far (e.g. all mostly silent), the most voiced.
            "audio": voice.audio, "score": (problem is None, stopped, -(cer or 0.0), voice.trimmer.voiced_fraction),
        }


class _Voice:
    """One chunk's codes -> trimmed audio, through the same `FrameDecoder` and `Trimmer` whether
    its frames come all at once (`whole`) or while they are generated (`feed`)."""

    def __init__(self, tts: TTS):
        self.threads = tts.threads
        self.decoder = FrameDecoder(tts.codec)
        self.trimmer = Trimmer(tts.sampling_rate, frame=self.decoder.hop)
        self.frames, self.final = 0, False
        self.pieces: list[np.ndarray] = []
        self.audio: np.ndarray | None = None  # all of it, for `whole`

    def feed(self, codes: torch.Tensor, final: bool) -> np.ndarray:
        self.frames, self.final = codes.shape[1], final
        # Griffin-Lim and neural decoders can overshoot full scale a little; a soft limiter
        # works sample by sample, which streaming can do as well as a whole-chunk pass.
        with num_threads(self.threads):
            samples = self.decoder.feed(codes, final)
        return limit(self.trimmer.feed(samples, final))

    def whole(self, codes: torch.Tensor) -> "_Voice":
        self.audio = self.feed(codes, final=True)
        return self


class AudioStream:
    """What `TTS.stream` returns: iterate it for float32 audio pieces; `chunks` reports each
    chunk (text, stop_reason, retries, ...) once it has been spoken."""

    def __init__(self, run: _Run):
        self._run = run
        self.sampling_rate = run.tts.sampling_rate

    def __iter__(self) -> Iterator[np.ndarray]:
        for _, piece in self._run.events():
            if len(piece):
                yield piece

    @property
    def chunks(self) -> list[dict]:
        return [r for r in self._run.reports if r is not None]


def require_voiced(chunks: list[dict], text: str, seed: int | None) -> None:
    """Raise when every chunk of `text` came out silent (every take): `synthesize` reports such
    a text with `samples` 0 in each chunk; `tts(text)`, `say` and the server fail instead."""
    if chunks and not any(chunk["samples"] for chunk in chunks):
        shown = text if len(text) <= 60 else text[:57] + "..."
        takes = "every take" if seed is None else f"every take, seed {seed}"
        raise TokttsError(f"the voice gave only silence for {shown!r} ({takes}): try another seed or a longer text")


def _result(audio: np.ndarray, rate: int, reports: list[dict]) -> dict[str, Any]:
    stop = "eos" if all(r["stop_reason"] == "eos" for r in reports) else "max_length"
    return {
        "audio": audio.astype(np.float32, copy=False),
        "sampling_rate": rate,
        "stop_reason": stop,
        "text": " ".join(r["text"] for r in reports),
        "frames": sum(r["frames"] for r in reports),
        "retries": sum(r["retries"] for r in reports),
        "chunks": reports,
    }


def _download_from_hub(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id))
    except Exception as e:
        raise TokttsError(
            f"model {repo_id!r} is neither a local directory nor downloadable from the Hub ({type(e).__name__}); "
            "pass an existing model directory"
        ) from None


def text_to_speech_pipeline(model_path: str | Path | None = None, device: str | None = None):
    """The seed project's entry point: `pipe(text, forward_params={...})` -> {"audio", "sampling_rate"}.
    forward_params takes temperature, top_k, top_p, cfg_scale, best_of, seed, max_seconds and do_sample
    (False = greedy)."""
    tts = TTS.from_pretrained(model_path, device=device)
    allowed = {"temperature", "top_k", "top_p", "cfg_scale", "best_of", "seed", "max_seconds", "do_sample"}

    def pipe(text: str, forward_params: dict | None = None) -> dict[str, Any]:
        if forward_params is not None and not isinstance(forward_params, dict):
            raise TokttsError(f"forward_params must be a dict such as {{'temperature': 0.7}}, got {forward_params!r}")
        params = dict(forward_params or {})
        unknown = set(params) - allowed
        if unknown:
            raise TokttsError(f"unknown forward_params {sorted(unknown)}; use {sorted(allowed)}")
        do_sample = params.pop("do_sample", True)
        if not isinstance(do_sample, bool):
            raise TokttsError(f"do_sample must be True or False, got {do_sample!r}")
        if not do_sample:
            params["temperature"] = 0.0
        return tts(text, **params)

    pipe.tts = tts
    return pipe
