"""The paper's experiments as named studies, and the numbers it reports.

Plain data, no I/O: `jaxser.ablate` runs a study's variants, `jaxser.ablate_report`
writes them beside the paper's numbers (docs/method.md, "Reported numbers").

- `settings`: the paper's settings 1-4, log-Mel or log-STFT input, lambda 0
  (softmax only) or 0.3 (alpha 0.5); Figure 5 and Tables 1-2.
- `lambda`: lambda = 0, 0.003, 0.03, 0.3, 3 on log-Mel, alpha 0.5; Figure 3.
- `alpha`: alpha = 0.1, 0.3, 0.5, 0.7, 0.9 on log-Mel, lambda 0.3; Figure 3.
- `reading`: settings 1 and 2 as the paper is written (the config as given)
  and as the authors' code ran it (`jaxser/configs/as_run.py`'s `AS_RUN`
  fields set on top of the config).
- `augment`: settings 1 and 2, each run's last layer then trained again with
  generative augmentation and its baselines (`jaxser.augment`) at two
  synthetic-to-real ratios: Ahn et al. 2025, with and without the centre loss.
"""

from typing import NamedTuple

from jaxser.data import records

__all__ = ['PAPER', 'PAPER_CLASSES', 'STUDIES', 'Paper', 'Study', 'Variant',
           'paper_result']


class Variant(NamedTuple):
  """One configuration of a study."""
  name: str  # the variant's folder name in its study
  kind: str  # 'mel' | 'stft'
  lam: float  # lambda, the centre-loss weight
  alpha: float  # the centre update rate
  reading: str = 'written'  # 'written' (the config) | 'run' (the code's fields)

  @property
  def key(self) -> str:
    """The run's name: variants with the same key are the same run."""
    suffix = '_as_run' if self.reading == 'run' else ''
    return f'{self.kind}_lambda{self.lam:g}_alpha{self.alpha:g}{suffix}'


class Study(NamedTuple):
  name: str
  title: str
  variants: tuple[Variant, ...]
  # `jaxser.augment` on every run of every variant at each of these ratios
  # (`config.augment.ratio`); none: the runs alone.
  augment_ratios: tuple[float, ...] = ()


STUDIES = {
    'settings': Study('settings', "The paper's settings 1-4 (Figure 5, Tables 1-2)", (
        Variant('setting1_mel_lambda0', 'mel', 0.0, 0.5),
        Variant('setting2_mel_lambda0.3', 'mel', 0.3, 0.5),
        Variant('setting3_stft_lambda0', 'stft', 0.0, 0.5),
        Variant('setting4_stft_lambda0.3', 'stft', 0.3, 0.5))),
    'lambda': Study('lambda', 'lambda sweep, log-Mel, alpha 0.5 (Figure 3)', tuple(
        Variant(f'lambda{lam:g}', 'mel', lam, 0.5)
        for lam in (0.0, 0.003, 0.03, 0.3, 3.0))),
    'alpha': Study('alpha', 'alpha sweep, log-Mel, lambda 0.3 (Figure 3)', tuple(
        Variant(f'alpha{alpha:g}', 'mel', 0.3, alpha)
        for alpha in (0.1, 0.3, 0.5, 0.7, 0.9))),
    'reading': Study('reading', 'Settings 1 and 2 as written and as run', (
        Variant('setting1_as_written', 'mel', 0.0, 0.5),
        Variant('setting2_as_written', 'mel', 0.3, 0.5),
        Variant('setting1_as_run', 'mel', 0.0, 0.5, 'run'),
        Variant('setting2_as_run', 'mel', 0.3, 0.5, 'run'))),
    'augment': Study('augment', 'Generative augmentation of settings 1 and 2 '
                     '(Ahn et al. 2025), without and with the centre loss', (
                         Variant('setting1_mel_lambda0', 'mel', 0.0, 0.5),
                         Variant('setting2_mel_lambda0.3', 'mel', 0.3, 0.5)),
                     augment_ratios=(1.0, 2.0)),
}


class Paper(NamedTuple):
  setting: str  # '1'..'4', or '' for a point of a sweep only
  ua: float  # %
  wa: float | None  # %
  confusion: tuple | None  # [4, 4] row-normalised, rows neu, ang, hap, sad


# docs/method.md, "Reported numbers": IEMOCAP, the paper's protocol. Keyed by
# (features, lambda, alpha); alpha is None where lambda is 0 (the centres are
# unused).
PAPER = {
    ('mel', 0.0, None): Paper('1', 63.80, 61.83, (
        (.575, .095, .164, .166), (.119, .691, .155, .035),
        (.211, .162, .511, .115), (.138, .026, .060, .776))),
    ('mel', 0.3, 0.5): Paper('2', 66.86, 65.40, (
        (.637, .067, .167, .127), (.108, .705, .167, .020),
        (.219, .131, .556, .094), (.128, .025, .070, .777))),
    ('stft', 0.0, None): Paper('3', 60.97, 58.93, None),
    ('stft', 0.3, 0.5): Paper('4', 65.13, 62.96, None),
    ('mel', 0.003, 0.5): Paper('', 64.81, None, None),
    ('mel', 0.03, 0.5): Paper('', 65.71, None, None),
    ('mel', 3.0, 0.5): Paper('', 60.08, None, None),
    ('mel', 0.3, 0.1): Paper('', 66.76, None, None),
    ('mel', 0.3, 0.3): Paper('', 66.85, None, None),
    ('mel', 0.3, 0.7): Paper('', 66.96, None, None),
    ('mel', 0.3, 0.9): Paper('', 66.41, None, None),
}
PAPER_CLASSES = records.PAPER_4CLASS.classes  # the classes of the paper's tables


def paper_result(variant: Variant) -> Paper | None:
  """The paper's numbers for a variant's configuration, if it reports them."""
  lam = round(float(variant.lam), 6)
  alpha = None if lam == 0 else round(float(variant.alpha), 6)
  return PAPER.get((variant.kind, lam, alpha))
