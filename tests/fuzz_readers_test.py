"""Property tests: random and malformed input to every reader and the loader.

Whatever the readers are given (IEMOCAP label lines, corpus file names, CSV
manifests, wav headers), they parse it or raise the project's own error
(`JaxserError`) with a message; never another exception. Example counts are
modest so the file runs in seconds.
"""

import csv
import io
import pathlib
import string
import tempfile

from hypothesis import HealthCheck
from hypothesis import event
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np
import soundfile as sf

from jaxser import audio
from jaxser import data
from jaxser.data import crema_d
from jaxser.data import emodb
from jaxser.data import iemocap
from jaxser.data import manifest
from jaxser.data import ravdess
from jaxser.data import records
from jaxser.data import tess
from jaxser.errors import JaxserError

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def _wav_bytes(seconds=0.1, rate=16000, subtype='PCM_16') -> bytes:
  buffer = io.BytesIO()
  samples = 0.1 * np.sin(np.arange(int(seconds * rate)) / 5.0)
  sf.write(buffer, samples.astype(np.float32), rate, format='WAV', subtype=subtype)
  return buffer.getvalue()


GOOD_WAV = _wav_bytes()


def _parses_or_jaxser_error(fn, *args, **kwargs):
  """Calls fn; a JaxserError must carry a message; other exceptions fail."""
  try:
    result = fn(*args, **kwargs)
  except JaxserError as e:
    assert str(e).strip(), f'{type(e).__name__} without a message'
    event(f'{fn.__module__}.{fn.__name__}: {type(e).__name__}')
    return None
  event(f'{fn.__module__}.{fn.__name__}: parsed')
  return result


def _check_reader_output(result):
  """A reader's `(utterances, issues)`: well-formed records only."""
  if result is None:
    return
  utterances, issues = result
  event(f'reader: {"some" if utterances else "no"} utterances, '
        f'{"some" if issues else "no"} issues')
  for utt in utterances:
    assert isinstance(utt, records.Utterance)
    assert utt.label in records.CANONICAL_LABELS
    assert utt.id and utt.path
  for issue in issues:
    assert isinstance(issue, records.Issue) and issue.detail


def _load(name, root):
  """`load_corpus` must keep only sound entries or raise JaxserError."""
  result = _parses_or_jaxser_error(data.load_corpus, name, str(root),
                                   label_map=records.CANONICAL_LABELS)
  if result is not None:
    kept, summary = result
    event(f'load_corpus {name}: kept {len(kept)}')
    assert kept and len(kept) == summary.num_utterances


# --------------------------------------------------------------------------
# IEMOCAP label lines.

_number = st.one_of(st.floats(0, 1e4).map('{:.4f}'.format),
                    st.text(alphabet='0123456789.-+e ', max_size=8))
_dialog = st.text(string.ascii_letters + string.digits + '_', min_size=1, max_size=10)
_valid_id = st.builds(lambda s, g, d, g2, n: f'Ses{s:02d}{g}_{d}_{g2}{n:03d}',
                      st.integers(0, 99), st.sampled_from('FM'), _dialog,
                      st.sampled_from('FM'), st.integers(0, 999))
_near_id = st.builds(
    lambda s, g, d, g2, n: f'Ses{s}{g}_{d}_{g2}{n}',
    st.text(alphabet=string.digits + 'x', min_size=0, max_size=3),
    st.sampled_from(['F', 'M', 'X', '']), st.text(max_size=12).filter(
        lambda t: '\t' not in t and '\n' not in t and '\r' not in t),
    st.sampled_from(['F', 'M', 'm', '']), st.text(alphabet=string.digits, max_size=4))
_summary_line = st.builds(
    lambda a, b, utt, code, rest: f'[{a} - {b}]\t{utt}\t{code}\t[{rest}',
    _number, _number, st.one_of(_valid_id, _near_id, st.text(max_size=20)),
    st.one_of(st.sampled_from(sorted(iemocap.LABELS)), st.text(max_size=5)),
    st.text(max_size=20))
_label_line = st.one_of(_summary_line, st.text(max_size=80))


@FUZZ
@given(lines=st.lists(_label_line, max_size=8),
       junk=st.one_of(st.just(b''), st.binary(max_size=40)),
       audio_for_first=st.booleans())
def test_iemocap_label_lines(lines, junk, audio_for_first):
  with tempfile.TemporaryDirectory() as tmp:
    root = pathlib.Path(tmp)
    folder = root / 'Session1' / 'dialog' / 'EmoEvaluation'
    folder.mkdir(parents=True)
    text = '\n'.join(lines).encode('utf-8', 'surrogatepass') + b'\n' + junk
    (folder / 'Ses01F_impro01.txt').write_bytes(text)
    result = _parses_or_jaxser_error(iemocap.read, root)
    _check_reader_output(result)
    if result and result[0] and audio_for_first:
      path = pathlib.Path(result[0][0].path)
      path.parent.mkdir(parents=True, exist_ok=True)
      path.write_bytes(GOOD_WAV)
    _load('iemocap', root)


# --------------------------------------------------------------------------
# Corpus file names, for each reader that reads its labels from names.

_name_chars = st.characters(blacklist_characters='/\x00', blacklist_categories=('Cs',))
_random_name = st.text(_name_chars, min_size=1, max_size=40).filter(
    lambda t: t not in ('.', '..') and len(t.encode()) < 200)


def _digits(n):
  """n digits (usually), or something close to them."""
  return st.one_of(st.integers(0, 10**n - 1).map(lambda v: f'{v:0{n}d}'),
                   st.text(string.digits + 'a', max_size=n + 1))


_NEAR = {
    'crema_d': st.builds(lambda a, s, e, l: f'{a}_{s}_{e}_{l}', _digits(4),
                         st.text('ABIDTWX', min_size=3, max_size=3),
                         st.sampled_from(sorted(crema_d.LABELS) + ['XXX', 'ang', '']),
                         st.sampled_from(list(crema_d.LEVELS) + ['ZZ', ''])),
    'ravdess': st.lists(_digits(2), min_size=6, max_size=8).map('-'.join),
    'emodb': st.builds(lambda s, t, e, v: f'{s}{t}{e}{v}', _digits(2),
                       st.one_of(st.builds(lambda c, d: c + d, st.sampled_from('ab'), _digits(2)),
                                 st.text('ab0123', max_size=4)),
                       st.text('WLEAFTNXw', min_size=1, max_size=2), st.text('abz', max_size=2)),
    'tess': st.builds(lambda s, w, e: f'{s}_{w}_{e}',
                      st.sampled_from(['OAF', 'YAF', 'oaf', 'XAF', '']),
                      st.text(_name_chars, max_size=8),
                      st.sampled_from(sorted(tess.LABELS) + ['Fear', 'PS', 'x', ''])),
}
_READERS = {'crema_d': crema_d.read, 'ravdess': ravdess.read,
            'emodb': emodb.read, 'tess': tess.read}


@st.composite
def _named_files(draw):
  """A reader's name and file stems for it: near its layout, or anything."""
  name = draw(st.sampled_from(sorted(_READERS)))
  stems = draw(st.lists(st.one_of(_NEAR[name], _random_name), min_size=1,
                        max_size=6, unique=True))
  return name, stems


@FUZZ
@given(case=_named_files(), suffix=st.sampled_from(['.wav', '.wav', '.WAV', '.txt', '']),
       content=st.sampled_from(['good', 'good', 'empty', 'junk']))
def test_corpus_file_names(case, suffix, content):
  name, stems = case
  payload = {'good': GOOD_WAV, 'empty': b'', 'junk': b'RIFF\x00\x00'}[content]
  with tempfile.TemporaryDirectory() as tmp:
    root = pathlib.Path(tmp)
    for stem in stems:
      try:
        (root / f'{stem}{suffix}').write_bytes(payload)
      except OSError:  # a name this file system refuses (too long, ...)
        pass
    _check_reader_output(_parses_or_jaxser_error(_READERS[name], root))
    _load(name, root)


# --------------------------------------------------------------------------
# CSV manifests.

_OPTIONAL = ['id', 'speaker', 'session', 'gender', 'improvised', 'extra', '',
             'Path', ' LABEL ', 'path']
_path = st.one_of(st.just('a.wav'),
                  st.sampled_from(['./a.wav', 'missing.wav', '.', '..', '/', '',
                                   'sub/../a.wav', 'a.WAV', 'sub']),
                  st.text(max_size=12))
_label = st.one_of(st.sampled_from(['neutral', 'anger', 'Fear', ' sad ', 'calm']),
                   st.sampled_from(['xxx', 'no agreement', '', 'angri']),
                   st.text(max_size=8))
_field = st.one_of(
    st.sampled_from(['a', 'M', 'female', 'true', 'no', 'maybe', '"', 'a,b',
                     'a\nb', 'a.wav']), st.text(max_size=12))


@st.composite
def _csv_text(draw):
  """A manifest with path and label columns (mostly), rows of mixed fields."""
  header = ['path', 'label'] + draw(st.lists(st.sampled_from(_OPTIONAL), max_size=4))
  header = draw(st.permutations(header))
  if draw(st.booleans()) and draw(st.booleans()):
    header = header[:draw(st.integers(0, len(header)))]  # a column missing
  rows = []
  for _ in range(draw(st.integers(0, 6))):
    row = [draw(_path if c == 'path' else _label if c == 'label' else _field)
           for c in header]
    extra = draw(st.integers(-1, 1))  # short rows, long rows
    rows.append(row[:len(row) + extra] if extra < 0 else row + ['x'] * extra)
  buffer = io.StringIO()
  writer = csv.writer(buffer)
  writer.writerow(header)
  writer.writerows(rows)
  return buffer.getvalue()


@FUZZ
@given(text=_csv_text(), bom=st.booleans())
@example(text='path,label\n.,neutral\n', bom=False)  # found: used to raise ValueError
@example(text='path,label\nsub/..,neutral\n/,sad\n..,sad\n', bom=True)
def test_csv_manifests(text, bom):
  with tempfile.TemporaryDirectory() as tmp:
    root = pathlib.Path(tmp)
    (root / 'a.wav').write_bytes(GOOD_WAV)
    (root / 'sub').mkdir()
    csv_path = root / 'manifest.csv'
    csv_path.write_bytes(b'\xef\xbb\xbf' * bom + text.encode('utf-8', 'surrogatepass'))
    _check_reader_output(_parses_or_jaxser_error(manifest.read, csv_path))
    _load('manifest', csv_path)


@FUZZ
@given(head=st.sampled_from([b'', b'path,label\n', b'\xef\xbb\xbfpath,label\n',
                             b'\xff\xfep\x00a\x00', b'path,label\na.wav,']),
       body=st.one_of(st.binary(max_size=80), st.text(max_size=80).map(str.encode)))
def test_csv_manifest_bytes(head, body):
  with tempfile.TemporaryDirectory() as tmp:
    root = pathlib.Path(tmp)
    (root / 'a.wav').write_bytes(GOOD_WAV)
    csv_path = root / 'manifest.csv'
    csv_path.write_bytes(head + body)
    _check_reader_output(_parses_or_jaxser_error(manifest.read, csv_path))
    _load('manifest', csv_path)


def test_manifest_with_undecodable_bytes_names_the_file():
  # Found by the fuzzing above: a CSV in another encoding used to escape as
  # UnicodeDecodeError.
  with tempfile.TemporaryDirectory() as tmp:
    csv_path = pathlib.Path(tmp) / 'manifest.csv'
    csv_path.write_bytes(b'path,label\n\xe9t\xe9.wav,neutral\n')
    try:
      manifest.read(csv_path)
    except JaxserError as e:
      assert 'manifest.csv' in str(e) and 'UTF-8' in str(e)
    else:
      raise AssertionError('an undecodable manifest was accepted')


# --------------------------------------------------------------------------
# wav headers.


def _riff(fmt_fields, data_size, body):
  """A RIFF/WAVE file from `fmt ` fields (possibly absurd) and a data chunk."""
  tag, channels, rate, block_align, bits = fmt_fields
  byte_rate = (rate * block_align) & 0xFFFFFFFF
  fmt = (tag.to_bytes(2, 'little') + channels.to_bytes(2, 'little')
         + rate.to_bytes(4, 'little') + byte_rate.to_bytes(4, 'little')
         + block_align.to_bytes(2, 'little') + bits.to_bytes(2, 'little'))
  chunks = (b'fmt ' + len(fmt).to_bytes(4, 'little') + fmt
            + b'data' + data_size.to_bytes(4, 'little') + body)
  return b'RIFF' + (len(chunks) + 4).to_bytes(4, 'little') + b'WAVE' + chunks


_u16 = st.integers(0, 0xFFFF)
_u32 = st.integers(0, 0xFFFFFFFF)
_fmt = st.tuples(st.sampled_from([1, 3, 0, 2, 0xFFFE, 7]), st.sampled_from([0, 1, 2, 9, 0xFFFF]),
                 st.one_of(st.sampled_from([0, 1, 8000, 16000, 44100]), _u32),
                 st.sampled_from([0, 1, 2, 4, 8, 3]), st.sampled_from([0, 8, 16, 24, 32, 64, 7]))
_wav_file = st.one_of(
    st.binary(max_size=120),
    st.builds(lambda cut: GOOD_WAV[:cut], st.integers(0, 200)),
    st.builds(lambda cut, junk: GOOD_WAV[:cut] + junk, st.integers(0, 60),
              st.binary(max_size=40)),
    st.builds(_riff, _fmt, st.one_of(_u32, st.integers(0, 64)), st.binary(max_size=64)),
    st.sampled_from([_wav_bytes(subtype='FLOAT'), _wav_bytes(rate=8000)]),
)


@FUZZ
@given(blob=_wav_file)
@example(blob=_wav_bytes(seconds=1e-6, rate=1_000_000))  # found: 1 sample at 1 MHz
                                                        # resampled to none
def test_wav_headers(blob):
  with tempfile.TemporaryDirectory() as tmp:
    path = pathlib.Path(tmp) / 'x.wav'
    path.write_bytes(blob)
    samples = _parses_or_jaxser_error(audio.load, path)
    if samples is not None:
      assert samples.ndim == 1 and samples.dtype == np.float32 and samples.size
      assert np.all(np.isfinite(samples))
    # Never raises: faults are issues. (It reads integer PCM headers only, so
    # it may pass a file whose body audio.load then refuses; the feature
    # cache reports those.)
    issues = data.check_audio(str(path))
    assert all(isinstance(i, records.Issue) for i in issues)
