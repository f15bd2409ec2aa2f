"""What the engine refuses, each as an exception whose message is for humans.

The Django side maps these onto its API errors (``removal.requests``); the
engine itself never knows about HTTP.
"""

from __future__ import annotations

from imaging.formats import SUPPORTED_NAMES, display_name


class PipelineError(Exception):
    """Base for everything the pipeline refuses; the message is for humans."""


class UnsupportedFormat(PipelineError):
    def __init__(self, detected: str):
        self.detected = detected
        super().__init__(f"Unsupported image format: {detected}. Supported: {SUPPORTED_NAMES}")


class UndecodableImage(PipelineError):
    pass


def damaged(fmt: str, exc: BaseException | None = None) -> UndecodableImage:
    """What went wrong, in words a customer can act on; never Pillow's own text.

    Pillow's messages name its modules, limits and buffer objects
    (``PngImagePlugin.MAX_TEXT_CHUNK``, ``<_io.BytesIO object at 0x...>``).
    """
    name = display_name(fmt)
    if isinstance(exc, ValueError) and "MAX_TEXT_CHUNK" in str(exc):
        return UndecodableImage(
            f"The {name} file carries a text or metadata block too large to read safely."
        )
    return UndecodableImage(f"The {name} file is damaged or truncated and could not be decoded.")


class TooManyPixels(PipelineError):
    def __init__(self, width: int, height: int, max_pixels: int):
        self.width, self.height, self.max_pixels = width, height, max_pixels
        super().__init__(
            f"Image is {width}x{height} ({width * height:,} pixels); "
            f"the limit is {max_pixels:,} pixels."
        )


class SideTooLong(TooManyPixels):
    """Within the pixel limit but too long and thin to process (e.g. 1x50,000,000)."""

    def __init__(self, width: int, height: int, max_side: int):
        self.width, self.height, self.max_side = width, height, max_side
        PipelineError.__init__(
            self,
            f"Image is {width}x{height}; the longest side allowed is {max_side:,} pixels.",
        )


class DecompressionBomb(TooManyPixels):
    """Pillow's own guard fired while reading the header: far too many pixels."""

    def __init__(self):
        PipelineError.__init__(
            self, "The image declares an absurd number of pixels and was refused unread."
        )


class DeadlineExceeded(PipelineError):
    pass


class NoSubjectFound(PipelineError):
    """An option needs the subject (crop) and the mask is empty."""


class OptionError(ValueError):
    """A value a customer sent for ``field`` that we cannot honour; the message says why."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(message)
