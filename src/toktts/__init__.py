"""toktts: characters in, neural-codec tokens out, a waveform at the end."""
from toktts.errors import TokttsError

__version__ = "0.1.0"
__all__ = ["TTS", "TokttsError", "text_to_speech_pipeline", "__version__"]


def __getattr__(name: str):
    # Importing torch and the model takes a second; keep `import toktts` (and the CLI's --help) fast.
    if name in ("TTS", "text_to_speech_pipeline"):
        from toktts import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'toktts' has no attribute {name!r}")
