"""The demo corpus's recipe: what each utterance is, and how espeak-ng says it.

Project-written sentences spoken by ten espeak-ng voices with per-emotion
prosody taken from the rule tables of the emotional speech synthesis
literature,

  I. R. Murray and J. L. Arnott, "Toward the simulation of emotion in
  synthetic speech: a review of the literature on human vocal emotion",
  JASA 93(2), 1993, pp. 1097-1108 (Table I);
  M. Schroeder, "Emotional speech synthesis: a review", Eurospeech 2001
  (the prosody rules of the systems it surveys),

which give, relative to neutral speech:

  cue              angry            happy              sad
  speech rate      slightly faster  somewhat faster    slower
  mean pitch       much higher      higher             lower
  pitch range      much wider       much wider         narrower
  intensity        higher           somewhat higher    lower
  pauses           -                -                  longer
  voice quality    tense            smooth             breathy

espeak-ng sets rate, volume, pitch, pitch range and the gap between words;
tension is approximated by a flatter spectral tilt (a first-order
high-frequency emphasis) and breathiness by aspiration noise that follows the
speech envelope. Every cue is jittered per utterance, and the speakers have
their own habitual rate, pitch and level, so that the classes overlap in each
global statistic (duration, loudness, mean pitch) and a model has to learn
more than one number. Loudness also varies with a per-utterance gain and the
recordings carry a low background noise at a varying level.

`plan` decides every utterance (an `UtteranceSpec`) from the seed, before
any synthesis; `render` turns one into 16 kHz float32 through `Espeak`,
libespeak-ng run in-process through ctypes from the `espeakng-loader` wheel
(library and voice data included; no system package). Building, caching and
reading the corpus are `jaxser.data.demo`'s.
"""

import ctypes
import ctypes.util
import importlib.metadata
import math
from typing import NamedTuple

import espeakng_loader
import numpy as np

from jaxser import audio
from jaxser.data import demo_recipes
from jaxser.data import records
from jaxser.errors import JaxserError

__all__ = ['CLASS_COUNTS', 'SENTENCES', 'SESSIONS', 'Espeak', 'UtteranceSpec',
           'class_counts', 'plan', 'recipe_params', 'render']

# IEMOCAP's 4-class counts (docs/method.md, Protocols): the class proportions.
CLASS_COUNTS = dict(zip(records.PAPER_4CLASS.classes, (1708, 1103, 1636, 1084)))

SESSIONS = demo_recipes.RECIPES['v1'].sessions  # the first recipe's voices

# Written for jaxser: everyday content with no emotional words; short (5-6
# words), medium (7-9) and long (10-12) sentences in equal numbers.
SENTENCES = (
    'The bus was late again.',
    'Put the box by the door.',
    'She moved to the city.',
    'The shop closes at six.',
    'I left my coat upstairs.',
    'We walked along the river.',
    'The kettle is on the shelf.',
    'He painted the kitchen blue.',
    'The tickets are in my bag.',
    'They sold the old piano.',
    'The lift is out of order.',
    'Your keys were in the car.',
    'The water was very cold.',
    'Nobody answered the door.',
    'The printer needs more paper.',
    'My sister called this morning.',
    'The train to the coast leaves at nine tomorrow.',
    'I left the blue folder on the kitchen table.',
    'We are moving the meeting to the second floor.',
    'Her brother bought a new bicycle last week.',
    'They painted the fence in the back garden.',
    'My phone battery ran out during the call.',
    'You can park the car next to the bakery.',
    'The weather will change again by Thursday.',
    'Someone moved all the chairs into the hallway.',
    'The dog slept under the window all afternoon.',
    'She said the results would come out on Monday.',
    'There are seven boxes waiting in the garage.',
    'The children planted tomatoes near the wall.',
    'The doctor will see you at half past four.',
    'His flight was moved to the next morning.',
    'I signed the form and sent it back yesterday.',
    'The package should arrive at the front desk before noon.',
    'He wrote the whole report on the flight home last night.',
    'We need two more tickets, so I called the box office.',
    'The library closes early, but the reading room stays open.',
    'I have already read the letter from the bank twice.',
    'The river rose after the rain, and the lower road closed.',
    'They changed the timetable, so the last train leaves at ten.',
    'The new road opens at the end of the month, after the bridge.',
    'She keeps the spare blankets in the attic, next to the photographs.',
    'We ate dinner by the station and then took a taxi home.',
    'They are building a school behind the hospital, near the park.',
    'Our teacher gave us the whole week to finish the project.',
    'The museum is free on Sundays, and the cafe opens at noon.',
    'You left the window open, and the rain came into the room.',
    'He sold his old car to a friend and now takes the bus.',
    'The radio said the bridge is closed, so we should leave early.',
)


class _Prosody(NamedTuple):
  """Cues relative to neutral speech (factors multiply, offsets add)."""
  rate: float       # speech rate factor
  pitch: float      # espeak pitch offset (0-100 scale)
  range: float      # espeak pitch range offset (0-100 scale)
  volume: float     # espeak volume (amplitude) factor
  word_gap: float   # extra pause between words, in 10 ms units
  tilt: float       # high-frequency emphasis, 0..1 (tense voice)
  breath: float     # aspiration noise level relative to the speech RMS


_NEUTRAL = dict(rate=170.0, pitch=45.0, range=40.0, volume=100.0)

# The rule table above in espeak units (directions from Murray & Arnott 1993,
# Schroeder 2001; magnitudes chosen so the classes still overlap).
_RULES = {
    'neutral': _Prosody(rate=1.00, pitch=0, range=0, volume=1.00, word_gap=0, tilt=0.0, breath=0.0),
    'angry': _Prosody(rate=1.08, pitch=14, range=28, volume=1.45, word_gap=0, tilt=0.6, breath=0.0),
    'happy': _Prosody(rate=1.06, pitch=10, range=36, volume=1.20, word_gap=0, tilt=0.0, breath=0.0),
    'sad': _Prosody(rate=0.88, pitch=-9, range=-20, volume=0.72, word_gap=2, tilt=0.0, breath=0.10),
}
# Per-utterance jitter: standard deviations (log-normal for the factors).
_JITTER = _Prosody(rate=0.10, pitch=7, range=12, volume=0.15, word_gap=1.0, tilt=0.15, breath=0.03)
# How much the speakers differ in habitual rate, pitch and level.
_SPEAKER_SPREAD = dict(rate=0.06, pitch=5.0, gain_db=2.5)
_GAIN_DB = (-7.0, 5.0)       # per-utterance loudness, uniform
_SNR_DB = (22.0, 42.0)       # background noise, uniform
_EXCLAIM = {'neutral': 0.1, 'angry': 0.6, 'happy': 0.5, 'sad': 0.0}  # '!' ending
_LEVEL = 0.35                # base gain on espeak's output
_LENGTHS = 3                # SENTENCES holds short, medium, long thirds


class UtteranceSpec(NamedTuple):
  """Everything one utterance is made from (decided before any synthesis)."""
  id: str
  label: str
  speaker: str
  session: str
  gender: str
  voice: str
  text: str
  rate: int
  pitch: int
  range: int
  volume: int
  word_gap: int
  tilt: float
  breath: float
  gain_db: float
  snr_db: float
  seed: int
  channel: demo_recipes.ChannelSpec | None = None  # v1: none (its clean channel)


def recipe_params(recipe: str = 'v1') -> dict:
  """The recipe and the versions of what renders it (for params.json).

  Everything here changes the corpus' bytes; `jaxser.data.demo` adds the
  size, the seed and the build's own parameters.
  """
  return {**demo_recipes.params(recipe),
      'espeak_ng': _espeak_version(),
      'espeakng_loader': importlib.metadata.version('espeakng-loader'),
      'soxr': importlib.metadata.version('soxr'),
      'numpy': np.__version__.split('.')[0],  # Generator streams are stable
      'sessions': demo_recipes.RECIPES[recipe].sessions, 'sentences': SENTENCES,
      'neutral': _NEUTRAL,
      'rules': {k: v._asdict() for k, v in _RULES.items()},
      'jitter': _JITTER._asdict(), 'speaker_spread': _SPEAKER_SPREAD,
      'gain_db': _GAIN_DB, 'snr_db': _SNR_DB, 'exclaim': _EXCLAIM,
      'level': _LEVEL,
  }


# --------------------------------------------------------------------------
# The plan: every utterance's speaker, sentence and prosody, from the seed.


def class_counts(num_utterances: int) -> dict[str, int]:
  """Utterances per class in IEMOCAP's proportions (largest remainders)."""
  total = sum(CLASS_COUNTS.values())
  exact = {k: num_utterances * v / total for k, v in CLASS_COUNTS.items()}
  counts = {k: math.floor(v) for k, v in exact.items()}
  by_remainder = sorted(exact, key=lambda k: counts[k] - exact[k])
  for k in by_remainder[:num_utterances - sum(counts.values())]:
    counts[k] += 1
  return counts


def _speakers(recipe: str) -> list[tuple[str, str, str, str]]:
  """(speaker, session, gender, voice) for the recipe's voices."""
  return [(f'{session}{gender}', session, gender, voice)
          for session, male, female in demo_recipes.RECIPES[recipe].sessions
          for gender, voice in (('M', male), ('F', female))]


def plan(num_utterances: int, seed: int, recipe: str = 'v1') -> list[UtteranceSpec]:
  """The corpus as a list of `UtteranceSpec`, in a seeded random order.

  Each class is dealt round-robin over the speakers and over the three
  sentence lengths, so every speaker has about the class proportions and
  every class the same mix of short and long sentences; each utterance then
  draws its sentence and its jitter from its own stream,
  `default_rng([seed, index])`, and its channel (recipes other than 'v1')
  from `default_rng([seed, index, 1])`.
  """
  rng = np.random.default_rng(seed)
  voices = _speakers(recipe)
  habits = {s[0]: (rng.normal(0, _SPEAKER_SPREAD['rate']),
                   rng.normal(0, _SPEAKER_SPREAD['pitch']),
                   rng.normal(0, _SPEAKER_SPREAD['gain_db'])) for s in voices}
  dealt = []
  for label, count in class_counts(num_utterances).items():
    first_voice, first_length = rng.integers(len(voices)), rng.integers(_LENGTHS)
    dealt.extend((label, voices[(first_voice + k) % len(voices)],
                  (first_length + k) % _LENGTHS) for k in range(count))
  order = rng.permutation(len(dealt))
  specs = [_spec(index, *dealt[i], habits, seed) for index, i in enumerate(order)]
  ranges = demo_recipes.RECIPES[recipe].channel
  if ranges is None:
    return specs
  return [spec._replace(channel=demo_recipes.draw_channel(
      ranges, np.random.default_rng([seed, index, 1]))) for index, spec in enumerate(specs)]


def _spec(index: int, label: str, voice: tuple, length: int, habits: dict,
          seed: int) -> UtteranceSpec:
  speaker, session, gender, voice_name = voice
  rng = np.random.default_rng([seed, index])
  rule = _RULES[label]
  habit_rate, habit_pitch, habit_gain = habits[speaker]
  jitter = lambda sd: rng.normal(0.0, sd)
  per_length = len(SENTENCES) // _LENGTHS
  text = SENTENCES[length * per_length + int(rng.integers(per_length))]
  if rng.random() < _EXCLAIM[label]:
    text = text[:-1] + '!'
  return UtteranceSpec(
      id=f'{speaker}_{index:05d}', label=label, speaker=speaker,
      session=session, gender=gender, voice=voice_name, text=text,
      rate=int(round(_NEUTRAL['rate'] * rule.rate
                     * math.exp(jitter(_JITTER.rate) + habit_rate))),
      pitch=int(np.clip(round(_NEUTRAL['pitch'] + rule.pitch + habit_pitch
                              + jitter(_JITTER.pitch)), 0, 100)),
      range=int(np.clip(round(_NEUTRAL['range'] + rule.range
                              + jitter(_JITTER.range)), 0, 100)),
      volume=int(np.clip(round(_NEUTRAL['volume'] * rule.volume
                               * math.exp(jitter(_JITTER.volume))), 10, 200)),
      word_gap=int(max(0, round(rule.word_gap + jitter(_JITTER.word_gap)))),
      tilt=float(np.clip(rule.tilt + jitter(_JITTER.tilt), 0.0, 0.9)) if rule.tilt else 0.0,
      breath=float(max(0.0, rule.breath + jitter(_JITTER.breath))) if rule.breath else 0.0,
      gain_db=float(rng.uniform(*_GAIN_DB) + habit_gain),
      snr_db=float(rng.uniform(*_SNR_DB)),
      seed=int(rng.integers(2**31 - 1)))


# --------------------------------------------------------------------------
# Rendering one utterance.


def render(engine: 'Espeak', spec: UtteranceSpec) -> np.ndarray:
  """One utterance as 16 kHz float32, dry (the builder applies `spec.channel`)."""
  speech = engine.synthesize(spec.text, spec.voice, rate=spec.rate,
                             volume=spec.volume, pitch=spec.pitch,
                             pitch_range=spec.range, word_gap=spec.word_gap,
                             noise_seed=spec.seed)
  speech = _trim(speech.astype(np.float32) / 32768.0)
  speech = audio.to_mono_rate(speech, engine.sample_rate)
  rng = np.random.default_rng(spec.seed)
  if spec.tilt:
    speech = _tense(speech, spec.tilt)
  if spec.breath:
    speech = speech + _aspiration(speech, spec.breath, rng)
  speech = speech * (_LEVEL * 10 ** (spec.gain_db / 20))
  pad = np.zeros(int(0.15 * audio.SAMPLE_RATE), np.float32)
  speech = np.concatenate([pad, speech, pad])
  rms = np.sqrt(np.mean(np.square(speech)))
  speech = speech + rng.normal(0, rms * 10 ** (-spec.snr_db / 20), speech.shape)
  peak = np.max(np.abs(speech))
  if peak > 0.99:  # rare: the loudest angry draws; limit rather than clip
    speech = speech * (0.99 / peak)
  return speech.astype(np.float32)


def _trim(x: np.ndarray, threshold: float = 1e-3) -> np.ndarray:
  """Drops espeak's leading and trailing silence."""
  loud = np.flatnonzero(np.abs(x) > threshold)
  return x[loud[0]:loud[-1] + 1] if len(loud) else x


def _tense(x: np.ndarray, amount: float) -> np.ndarray:
  """A flatter spectral tilt (high-frequency emphasis), RMS unchanged."""
  y = x - amount * np.concatenate([[0.0], x[:-1]]).astype(np.float32)
  return y * (np.sqrt(np.mean(x ** 2)) / max(np.sqrt(np.mean(y ** 2)), 1e-9))


def _aspiration(x: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
  """High-passed noise following the speech envelope (breathy voice)."""
  noise = rng.normal(0.0, 1.0, x.shape).astype(np.float32)
  noise = noise - np.concatenate([[0.0], noise[:-1]]).astype(np.float32)
  window = np.hanning(321).astype(np.float32)
  envelope = np.sqrt(np.convolve(x ** 2, window / window.sum(), mode='same'))
  noise = noise * envelope
  scale = level * np.sqrt(np.mean(x ** 2)) / max(np.sqrt(np.mean(noise ** 2)), 1e-9)
  return (noise * scale).astype(np.float32)


# --------------------------------------------------------------------------
# espeak-ng through ctypes.

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _VOLUME, _PITCH, _RANGE, _WORDGAP = 1, 2, 3, 4, 7
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short),
                             ctypes.c_int, ctypes.c_void_p)


def _library():
  """libespeak-ng from the espeakng-loader wheel, with its signatures."""
  lib = ctypes.CDLL(espeakng_loader.get_library_path())
  lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
  lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
  lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
  lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
  lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint,
                               ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                               ctypes.c_void_p, ctypes.c_void_p]
  lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
  lib.espeak_Info.argtypes = [ctypes.c_void_p]
  lib.espeak_Info.restype = ctypes.c_char_p
  return lib, espeakng_loader.get_data_path()


def _espeak_version() -> str:
  """The libespeak-ng version string (e.g. '1.52.0')."""
  lib, _ = _library()
  return lib.espeak_Info(None).decode()


class Espeak:
  """libespeak-ng, initialised for synchronous synthesis into memory.

  The C library is one global state per process; make one `Espeak` per
  process. The random generators behind its voices' breath noise are
  reseeded for every utterance, so the output is reproducible.
  """

  def __init__(self):
    self._lib, data_path = _library()
    self.sample_rate = self._lib.espeak_Initialize(
        _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), 0)
    if self.sample_rate <= 0:
      raise JaxserError(f'espeak-ng failed to initialise with data in {data_path}')
    self._libc = ctypes.CDLL(ctypes.util.find_library('c'))
    self._chunks = []
    self._callback = _CALLBACK(self._collect)  # keep a reference: C holds it
    self._lib.espeak_SetSynthCallback(self._callback)

  def _collect(self, samples, count, events):
    del events
    if count > 0:
      self._chunks.append(np.ctypeslib.as_array(samples, (count,)).copy())
    return 0

  def synthesize(self, text: str, voice: str, *, rate: int, volume: int,
                 pitch: int, pitch_range: int, word_gap: int,
                 noise_seed: int) -> np.ndarray:
    """`text` spoken by `voice`, as int16 at `self.sample_rate`."""
    if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
      raise JaxserError(f'espeak-ng has no voice {voice!r}')
    for parameter, value in ((_RATE, rate), (_VOLUME, volume), (_PITCH, pitch),
                             (_RANGE, pitch_range), (_WORDGAP, word_gap)):
      self._lib.espeak_SetParameter(parameter, int(value), 0)
    # Breath noise draws from espeak-ng's own generator (seeded from the
    # clock at start-up) and libc rand(): seed both.
    self._lib.espeak_ng_SetRandSeed(noise_seed)
    self._libc.srand(noise_seed)
    self._chunks = []
    data = text.encode('utf-8')
    status = self._lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0,
                                    _CHARS_UTF8, None, None)
    if status != 0 or not self._chunks:
      raise JaxserError(f'espeak-ng could not say {text!r} with {voice!r} (error {status})')
    return np.concatenate(self._chunks)
