"""The exceptions jaxser raises for bad input, each naming what is wrong."""

__all__ = ['AudioError', 'CheckpointError', 'ConfigError', 'CorpusError',
           'IdentityError', 'Interrupted', 'JaxserError', 'NonFiniteError']


class JaxserError(Exception):
  """Base class of every error jaxser raises on purpose."""


class AudioError(JaxserError):
  """An audio file is missing, unreadable, empty or holds non-finite samples.

  Attributes:
    kind: the load-time fault it is, one of `jaxser.data.records.FAULTS`
      ('missing file', 'unreadable audio', 'empty audio', 'non-finite
      samples', 'truncated audio'), so callers sort it without reading the
      message.
  """

  def __init__(self, message: str, kind: str = 'unreadable audio'):
    super().__init__(message)
    self.kind = kind

  def __reduce__(self):  # keep the kind across processes
    return type(self), (str(self), self.kind)


class CorpusError(JaxserError):
  """A corpus on disk does not follow its layout, or holds bad entries."""


class ConfigError(JaxserError):
  """A configuration field has an impossible value."""


class CheckpointError(JaxserError):
  """A checkpoint is missing, incomplete or belongs to another setup."""


class NonFiniteError(JaxserError):
  """Training produced a NaN or Inf."""


class IdentityError(JaxserError):
  """A workdir's checkpoints or results belong to a run of another identity."""


class Interrupted(JaxserError):
  """The run was interrupted (SIGINT); what was saved is kept."""
