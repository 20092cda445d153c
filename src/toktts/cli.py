"""`toktts` command line: each handler parses its arguments and calls library code."""
from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import sys
import tempfile
from pathlib import Path

from toktts.errors import TokttsError

log = logging.getLogger("toktts")


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", action="append", default=[], metavar="YAML",
                   help="config file; repeat to merge several in order")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                   help="override one key, e.g. --set train.max_steps=50")


def _sampling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--temperature", type=float, default=None, help="0 = greedy (default: the model's)")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest codes, 0 = all (default: the model's)")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling, 1 = off (default: the model's)")
    p.add_argument("--cfg-scale", type=float, default=None,
                   help="classifier-free guidance, 1 = off (default: the model's)")
    p.add_argument("--seed", type=int, default=None,
                   help="the take to make (default: a random one, printed so that it can be made again)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for synthesis (default 1: the fastest when anything else runs)")
    p.add_argument("--precision", default=None, choices=["fp32", "bf16", "fp16", "int8"],
                   help="arithmetic of synthesis (default: fp32 on CPU, bf16 on a GPU); int8: the decoder's "
                        "layers in int8, ~2x faster at batch 1 on CPU")
    _backend_arg(p)


def _backend_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default=None, choices=["auto", "torch", "onnx"],
                   help="what runs the decoder steps: onnx (ONNX Runtime: the same tokens, faster; "
                        "the step graph is written once per model), torch, or auto (the default: onnx on a CPU "
                        "in fp32 or int8 where toktts[onnx] is installed)")


def _load_config(args):
    from toktts.config import load_config

    return load_config(args.config, args.overrides)


def cmd_corpus_synth(args) -> None:
    from toktts.corpus import synth_corpus

    out = synth_corpus(args.out, voice=args.voice, texts=args.texts, limit=args.limit, jobs=args.jobs,
                       short=args.short)
    print(f"corpus ready: {out}")


def cmd_corpus_download(args) -> None:
    from toktts import corpus

    if args.name != "ljspeech":
        raise TokttsError(f"unknown corpus {args.name!r}; available: ljspeech")
    kwargs = {"url": args.url} if args.url else {}
    if args.url:
        kwargs["sha256"] = args.sha256
    out = corpus.download_ljspeech(args.out, **kwargs)
    print(f"corpus ready: {out}")


def cmd_prepare(args) -> None:
    from toktts.data import prepare, prepare_summary

    from toktts.devices import resolve_device

    cfg = _load_config(args)
    root = prepare(cfg, device=resolve_device(args.device or "cpu"))
    print(prepare_summary(root))


def cmd_train(args) -> None:
    from toktts.train import train

    cfg = _load_config(args)
    out = train(cfg, resume=args.resume)
    if os.environ.get("RANK", "0") == "0":  # once, not once per data-parallel process
        print(f"model saved to {out}")


def _read_text(args) -> str:
    if args.text == "-":
        data = sys.stdin.buffer.read()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise TokttsError(f"the text on stdin is not UTF-8 (byte {e.start}); convert it, e.g. with iconv") from None
    if args.text_file:
        path = Path(args.text_file)
        if not path.is_file():
            raise TokttsError(f"text file {str(path)!r} not found")
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise TokttsError(f"text file {str(path)!r} is not UTF-8 (byte {e.start}); convert it, e.g. with "
                              "iconv") from None
    if args.text is None:
        raise TokttsError("give the text to say (or --text-file FILE, or - for stdin)")
    return args.text


def _model_path(args) -> str | None:
    """--voice NAME or --model DIR (neither: the bundled voice)."""
    from toktts.voices import voice_dir

    if args.voice and args.model:
        raise TokttsError("give --voice NAME or --model DIR, not both")
    return str(voice_dir(args.voice)) if args.voice else args.model


def cmd_voices(args) -> None:
    import json

    from toktts.voices import BUNDLED_VOICE, describe, find_voices, voices_dir

    voices = {name: describe(path) for name, path in find_voices().items()}
    if args.json:
        print(json.dumps([{"name": name, "default": name == BUNDLED_VOICE, **info} for name, info in voices.items()]))
        return
    rows = [("NAME", "CODEC", "RATE", "SIZE", "GUIDANCE", "PATH")]
    for name, v in voices.items():
        if "error" in v:
            rows.append((name, "?", "?", "?", "?", f"{v['path']} ({v['error']})"))
        else:
            rows.append((name + (" (default)" if name == BUNDLED_VOICE else ""), str(v["codec"]),
                         str(v["sampling_rate"]), f"{v['size_mb']} MB", "yes" if v["guidance"] else "no", v["path"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    print(f"\nmore voices: model directories in {voices_dir()} ($TOKTTS_VOICES)")


def cmd_export(args) -> None:
    from toktts import onnx_decoder
    from toktts.checkpoint import load_model_dir
    from toktts.devices import resolve_device
    from toktts.voices import bundled_voice_dir

    if not onnx_decoder.available():
        raise TokttsError("export onnx needs onnx and onnxruntime: pip install 'toktts[onnx]'")
    model_dir = Path(_model_path(args) or bundled_voice_dir())
    model, _, _ = load_model_dir(model_dir, resolve_device("cpu"))
    name = onnx_decoder.graph_name(args.precision)
    out = Path(args.out) if args.out else model_dir / name
    if out.is_dir():
        raise TokttsError(f"--out {str(out)!r} is a directory; give a file name, e.g. {out / name}")
    if args.precision == "fp32":
        onnx_decoder.export(model.decoder, out)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            onnx_decoder.quantize(onnx_decoder.export(model.decoder, Path(tmp) / name), out)
    print(f"decoder step graph ({args.precision}): {out}")


def cmd_say(args) -> None:
    from toktts.audio import SPEED_RANGE, change_speed, is_stream, limit, output_format, write_audio
    from toktts.inference import TTS
    from toktts.text import Lexicon

    lo, hi = SPEED_RANGE
    if not lo <= args.speed <= hi:  # written so that NaN fails too
        raise TokttsError(f"--speed must be between {lo} and {hi}, got {args.speed}")
    if not 0 < args.volume <= 4:  # written so that NaN fails too
        raise TokttsError(f"--volume must be above 0 and at most 4, got {args.volume}")
    if args.stream and (args.speed != 1.0 or args.volume != 1.0):
        raise TokttsError("--stream plays audio as it is made and cannot change its speed or volume; leave out "
                          "--speed and --volume")
    if args.output is not None and not args.output.strip():
        raise TokttsError("the output path -o is empty; give a file name, e.g. -o out.wav")
    output = args.output if args.output is not None else ("" if args.stream else "out.wav")
    fmt = output_format(output, args.format) if output else None  # a bad -o fails before any work
    lexicon = Lexicon.from_file(args.lexicon) if args.lexicon else None  # a bad one fails before loading
    text = _read_text(args)
    tts = TTS.from_pretrained(_model_path(args), device=args.device, threads=args.threads,
                              precision=args.precision, backend=args.backend).use_lexicon(lexicon)
    seed = args.seed
    if seed is None:  # a seed for every take, printed, so that a good one can be had again
        seed = tts.cfg.generate.seed if tts.cfg.generate.seed is not None else random.randrange(2**31)
    options = dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=seed,
                   retries=args.retries, verify=args.verify, cfg_scale=args.cfg_scale, best_of=args.best_of)
    if args.stream:
        audio = _say_stream(tts, text, options, keep=bool(output))
        if output:
            write_audio(output, audio, tts.sampling_rate, fmt)
            log.info("wrote %s (seed %d)", output, seed)
        return
    out = tts(text, progress=True, **options)  # (raises when every take of every chunk is silent)
    audio = out["audio"]  # (its peaks already limited; a stretch or a gain can raise them again)
    if args.speed != 1.0 or args.volume != 1.0:
        audio = limit(change_speed(audio, args.speed) * args.volume)
    write_audio(output, audio, out["sampling_rate"], fmt)
    seconds = len(audio) / out["sampling_rate"]
    chunks = len(out["chunks"])
    detail = f"{chunks} chunk{'s' * (chunks > 1)}, {out['retries']} retried" if chunks > 1 or out["retries"] else ""
    # To stderr when the audio itself goes to stdout (-o /dev/stdout | player).
    print(f"wrote {output} ({seconds:.2f} s, seed {seed}, stopped by {out['stop_reason']}"
          f"{', ' + detail if detail else ''})", file=sys.stderr if is_stream(output) else sys.stdout)


def _say_stream(tts, text: str, options: dict, keep: bool):
    """Raw 16-bit little-endian mono PCM on stdout as it is generated, for `aplay`/`sox`/`ffplay`;
    with `keep`, returns all of it (for -o) too."""
    import os

    import numpy as np

    from toktts.audio import to_int16
    from toktts.inference import require_voiced

    rate = tts.sampling_rate
    if sys.stdout.isatty():
        raise TokttsError(f"--stream writes raw audio to stdout: pipe it, e.g. | aplay -f S16_LE -c 1 -r {rate}")
    log.info("streaming %d Hz 16-bit mono PCM (seed %s), e.g. | aplay -f S16_LE -c 1 -r %d", rate,
             options["seed"], rate)
    out, pieces = sys.stdout.buffer, []
    stream = tts.stream(text, **options)
    try:
        for piece in stream:
            out.write(to_int16(piece).tobytes())
            out.flush()
            if keep:
                pieces.append(piece)
        require_voiced(stream.chunks, text, options["seed"])
    except BrokenPipeError:  # the player quit: stop quietly (and keep Python from complaining at exit)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        if keep:
            raise TokttsError("the player stopped reading before the end; nothing written to -o") from None
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)


def cmd_samples(args) -> None:
    from toktts.samples import write_samples

    cfg = _load_config(args)
    out = write_samples(cfg, model_dir=args.model, out_dir=args.out, limit=args.limit, seed=args.seed)
    print(f"samples written to {out}")


def cmd_evaluate(args) -> None:
    from toktts.evaluate import evaluate, format_summary

    metrics = evaluate(
        args.model, args.corpus, split=args.split, limit=args.limit, out_dir=args.out, asr=args.asr,
        seed=args.seed, batch_size=args.batch_size, device=args.device, asr_jobs=args.asr_jobs,
        sampling=dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, cfg_scale=args.cfg_scale,
                      best_of=args.best_of),
        ceilings_from=args.ceilings_from, precision=args.precision, backend=args.backend,
        chunk_chars=args.chunk_chars, close_chunks=args.close_chunks,
    )
    print(format_summary(metrics))


def cmd_bench(args) -> None:
    import json

    from toktts import bench
    from toktts.devices import check_threads

    check_threads(args.threads, "--threads")
    if args.runs < 1:
        raise TokttsError(f"--runs must be >= 1, got {args.runs}")
    cfg = _load_config(args)
    if args.what == "train":
        result = bench.bench_train(cfg, steps=args.runs, device=args.device, threads=args.threads,
                                   precision=args.precision)
    else:
        result = bench.bench_synth(cfg, seconds=args.seconds, runs=args.runs, device=args.device,
                                   threads=args.threads, precision=args.precision, backend=args.backend)
    print(bench.format_report(result))
    print(json.dumps(result))  # the last line: machine-readable


def cmd_normalize(args) -> None:
    from toktts.ssml import read
    from toktts.text import Lexicon

    lexicon = Lexicon.from_file(args.lexicon) if args.lexicon else None
    if args.phonemes:
        from toktts.phonemes import PHONEME_VOCAB, encode_texts
    for part in read(_read_text(args), lexicon):  # one line per part; SSML pauses shown after it
        said = PHONEME_VOCAB.decode(encode_texts([part.text], "phonemes")[0]) if args.phonemes else part.text
        print(said if part.pause is None else f"{said}  [pause {part.pause:g} s]")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("toktts")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake as one line (argparse prints the whole usage first)."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="toktts", description="Character-to-codec-token text-to-speech.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"toktts {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    corpus = sub.add_parser("corpus", help="get or make an LJSpeech-layout corpus")
    csub = corpus.add_subparsers(dest="corpus_command", required=True)
    p = csub.add_parser("synth", help="synthesize a corpus offline with flite from the LJSpeech transcripts")
    p.add_argument("--out", required=True, metavar="DIR", help="the corpus directory to write (metadata.csv, wavs/)")
    p.add_argument("--voice", default="slt", help="flite voice (default: slt); `flite -lv` lists them")
    p.add_argument("--texts", default=None, help="file of `id|text` lines (default: LJSpeech train transcripts)")
    p.add_argument("--limit", type=int, default=None, help="only the first N sentences")
    p.add_argument("--jobs", type=int, default=2, help="flite processes at once (default: 2)")
    p.add_argument("--short", type=int, default=None, metavar="N",
                   help="add N short phrases (greetings, windows of 1-4 words of the sentences) so the voice "
                        "learns short takes (default: 16%% of the packaged sentences kept, 2,000 for all; "
                        "none with --texts)")
    p.set_defaults(func=cmd_corpus_synth)
    p = csub.add_parser("download", help="download a corpus (resumable)")
    p.add_argument("name", choices=["ljspeech"], help="which corpus")
    p.add_argument("--out", required=True, metavar="DIR", help="where to unpack it")
    p.add_argument("--url", default=None, help="a mirror of the tarball")
    p.add_argument("--sha256", default=None, help="checksum of the mirror's tarball")
    p.set_defaults(func=cmd_corpus_download)

    p = sub.add_parser("prepare", help="turn a corpus into a token cache (once)")
    _config_args(p)
    p.add_argument("--device", default=None, help="where the codec encodes: cpu (default), cuda, cuda:1 ...")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train a model (accelerate launch works too)")
    _config_args(p)
    p.add_argument("--resume", action="store_true", help="continue from the last complete checkpoint")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("say", help="synthesize text (or SSML) to an audio file")
    p.add_argument("text", nargs="?", default=None,
                   help="the text, or - to read stdin; SSML (<speak>, <break>, <say-as>, <sub>, <p>, <s>) is understood")
    p.add_argument("--lexicon", default=None, metavar="FILE",
                   help="respellings, one `word respelling` per line, e.g. `Nguyen win`")
    p.add_argument("--text-file", default=None, metavar="FILE", help="read the text from a UTF-8 file")
    p.add_argument("--model", default=None, help="model directory or Hub id (default: the bundled voice)")
    p.add_argument("--voice", default=None, metavar="NAME", help="a voice by name (see `toktts voices`)")
    p.add_argument("-o", "--output", default=None, metavar="FILE",
                   help="where to write the audio (default: out.wav); the extension chooses the format: "
                        ".wav .flac .mp3 .ogg/.opus .pcm (raw 16-bit); /dev/stdout and FIFOs are written through")
    p.add_argument("--format", default=None, choices=["wav", "flac", "mp3", "opus", "pcm"],
                   help="the output format when -o has no extension (e.g. -o /dev/stdout)")
    p.add_argument("--speed", type=float, default=1.0, help="faster (> 1) or slower (< 1), same pitch; 0.25 to 4")
    p.add_argument("--volume", type=float, default=1.0,
                   help="gain (default 1); peaks are softly limited below full scale, never clipped")
    p.add_argument("--stream", action="store_true",
                   help="write raw 16-bit mono PCM to stdout as it is generated (pipe it to aplay/sox); "
                        "with -o, the file is written too when the stream ends")
    p.add_argument("--retries", type=int, default=None,
                   help="new tries for a chunk that runs away or is mostly silent (default: the model's)")
    p.add_argument("--best-of", type=int, default=None, metavar="N",
                   help="speak every chunk N times in one batch and keep the take pocketsphinx hears best")
    p.add_argument("--verify", action="store_true",
                   help="also retry chunks whose pocketsphinx transcript misses over half the characters")
    _sampling_args(p)
    p.set_defaults(func=cmd_say)

    p = sub.add_parser("samples", help="write generated and codec-resynthesized samples of train/val rows")
    _config_args(p)
    p.add_argument("--model", default=None, help="default: the config's train.output_dir")
    p.add_argument("--out", default=None, help="default: <model>/samples")
    p.add_argument("--limit", type=int, default=4, help="rows per split")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.set_defaults(func=cmd_samples)

    p = sub.add_parser("evaluate", help="intelligibility (ASR CER/WER), stops and speed, with an HTML report")
    p.add_argument("--model", default=None, help="model directory (default: the bundled voice)")
    p.add_argument("--corpus", required=True, help="LJSpeech-layout corpus with the reference recordings")
    p.add_argument("--split", default="val", choices=["val", "all"],
                   help="val: the sentences the model never trained on (default); all: the whole corpus")
    p.add_argument("--limit", type=int, default=None, help="only the first N sentences")
    p.add_argument("--out", default=None, help="default: <model>/eval-<split>")
    p.add_argument("--asr", default="pocketsphinx", help="pocketsphinx or whisper:PATH (a local Whisper model)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--temperature", type=float, default=None, help="0 = greedy (default: the model's)")
    p.add_argument("--top-k", type=int, default=None, help="top-k sampling, 0 = off (default: the model's)")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling, 1 = off (default: the model's)")
    p.add_argument("--cfg-scale", type=float, default=None, help="classifier-free guidance, 1 = off (default: the model's)")
    p.add_argument("--best-of", type=int, default=None, metavar="N",
                   help="speak each chunk N times and keep the take pocketsphinx hears closest to the text, as "
                        "say --best-of does (with --chunk-chars; pocketsphinx picks whatever --asr scores; "
                        "default: one take)")
    p.add_argument("--batch-size", type=int, default=8, help="sentences generated together (default: 8)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--asr-jobs", type=int, default=None, help="pocketsphinx processes at once (default: up to 4, one per core)")
    p.add_argument("--precision", default=None, choices=["fp32", "bf16", "fp16", "int8"],
                   help="arithmetic of synthesis (default: fp32 on CPU, bf16 on a GPU); int8: the decoder's "
                        "layers in int8, ~2x faster at batch 1 on CPU")
    p.add_argument("--ceilings-from", default=None, metavar="METRICS_JSON",
                   help="reuse the reference and resynthesis transcripts of an earlier evaluation of a model "
                        "with the same codec on the same corpus (A/B runs)")
    p.add_argument("--chunk-chars", type=int, default=None, metavar="N",
                   help="speak each sentence as `toktts say` does, cut into chunks of at most N characters "
                        "joined with pauses (no retries; 0 = the model's own length); default: each sentence "
                        "generated whole")
    p.add_argument("--close-chunks", action=argparse.BooleanOptionalAction, default=None,
                   help="with --chunk-chars: end each chunk cut inside a sentence with a full stop, or not "
                        "(--no-close-chunks); default: the model's generate.close_chunks")
    _backend_arg(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("bench", help="training throughput or synthesis speed (random weights)")
    p.add_argument("what", choices=["train", "synth"], help="training steps or synthesis")
    _config_args(p)
    p.add_argument("--runs", type=int, default=5, help="timed repetitions; the median is reported (default: 5)")
    p.add_argument("--seconds", type=float, default=2.0, help="synth: seconds of audio per run")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--precision", default=None, choices=["fp32", "bf16", "fp16", "int8"],
                   help="train: the config's train.precision by default; synth: the facade's (int8 is synth only)")
    _backend_arg(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("export", help="export a voice's decoder step graph for ONNX Runtime into its directory")
    p.add_argument("format", choices=["onnx"], help="the format (onnx)")
    p.add_argument("--model", default=None, help="model directory (default: the bundled voice)")
    p.add_argument("--voice", default=None, help="a voice by name (see `toktts voices`) instead of --model")
    p.add_argument("--out", default=None,
                   help="where to write the graph (default: decoder_step.onnx, or decoder_step-int8.onnx, in the "
                        "model directory, where synthesis finds it instead of exporting on first use; the graph "
                        "is the decoder's blocks only: embeddings, encoder and sampling stay in toktts)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "int8"],
                   help="int8: weights in int8, faster at batch 1 (synthesis uses it with --precision int8)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("voices", help="list the voices: the bundled one and those in the voices folder")
    p.add_argument("--json", action="store_true", help="machine-readable")
    p.set_defaults(func=cmd_voices)

    p = sub.add_parser("normalize", help="print the text as the model will read it")
    p.add_argument("text", nargs="?", default=None, help="the text or SSML, or - to read stdin")
    p.add_argument("--text-file", default=None, metavar="FILE", help="read the text from a UTF-8 file")
    p.add_argument("--lexicon", default=None, metavar="FILE", help="respellings, one `word respelling` per line")
    p.add_argument("--phonemes", action="store_true",
                   help="print the espeak-ng phonemes a model of model.text_input=phonemes reads instead")
    p.set_defaults(func=cmd_normalize)

    p = sub.add_parser("serve", help="OpenAI-compatible speech API and a web page (pip install 'toktts[server]')")
    p.add_argument("--model", default=None, help="model directory or Hub id (default: the bundled voice)")
    p.add_argument("--host", default="127.0.0.1", help="default: loopback only; 0.0.0.0 exposes it to the network")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000; 0: any free one)")
    p.add_argument("--api-key", default=None, help="require `Authorization: Bearer KEY` (default: $TOKTTS_API_KEY)")
    p.add_argument("--max-chars", type=int, default=4096, help="longest input accepted (longer: HTTP 413)")
    p.add_argument("--max-queue", type=int, default=64, help="requests waiting at most (more: HTTP 429)")
    p.add_argument("--max-batch", type=int, default=8, help="requests synthesized together at most (1: no batching)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for synthesis (default 1: the fastest when anything else runs)")
    p.add_argument("--lexicon", default=None, metavar="FILE", help="respellings, one `word respelling` per line")
    _backend_arg(p)
    p.add_argument("--voice", action="append", default=[], metavar="NAME=DIR",
                   help="serve another model directory as voice NAME (repeat for more); the voices folder's "
                        "are served too (see `toktts voices`)")
    p.add_argument("--max-voices", type=int, default=2,
                   help="voices besides the default kept loaded at once (the least recently used goes)")
    p.set_defaults(func=cmd_serve)
    return parser


def cmd_serve(args) -> None:
    from toktts.server import serve

    serve(args)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "urllib3", "numba", "accelerate"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # A kill (SIGTERM, a closed terminal) unwinds like Ctrl-C, so every half-written file is removed
    # on the way out (toktts.files), as it is for any other exception.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        args.func(args)
    except TokttsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
