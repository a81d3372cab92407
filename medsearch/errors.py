"""The one exception type a user sees: its message is a single line saying what is wrong and what to do."""


class MedsearchError(Exception):
    """A user-facing error. The CLI prints ``medsearch: error: <message>`` and exits with status 2."""


class WeightsUnavailableError(MedsearchError):
    """Pretrained weights could not be loaded (offline, no cache, bad checkpoint)."""


class ImageError(MedsearchError):
    """An image could not be decoded; the message is the reason recorded in the index report."""
