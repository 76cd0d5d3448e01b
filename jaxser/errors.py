"""The exceptions jaxser raises for bad input, each naming what is wrong."""


class JaxserError(Exception):
  """Base class of every error jaxser raises on purpose."""


class AudioError(JaxserError):
  """An audio file is missing, unreadable, empty or holds non-finite samples."""


class CorpusError(JaxserError):
  """A corpus on disk does not follow its layout, or holds bad entries."""


class ConfigError(JaxserError):
  """A configuration field has an impossible value."""


class CheckpointError(JaxserError):
  """A checkpoint is missing, incomplete or belongs to another setup."""


class NonFiniteError(JaxserError):
  """Training produced a NaN or Inf."""
