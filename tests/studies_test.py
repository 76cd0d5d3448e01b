"""jaxser.studies: the named studies share runs; the paper's numbers; the
'reading' study's variants and what its report says of them."""

from jaxser import ablate
from jaxser import ablate_report
from jaxser import report
from jaxser import studies
from jaxser.configs import as_run
from jaxser.configs import demo


def test_named_studies_share_runs_and_have_the_papers_numbers():
  variants = [v for study in studies.STUDIES.values() for v in study.variants]
  assert len(variants) == 20 and len({v.key for v in variants}) == 13
  assert sum(v.key == 'mel_lambda0.3_alpha0.5' for v in variants) == 5
  # The augmentation study augments the settings study's runs 1 and 2.
  augment = studies.STUDIES['augment']
  assert augment.variants == studies.STUDIES['settings'].variants[:2]
  assert augment.augment_ratios == (1.0, 2.0)
  assert not any(s.augment_ratios for n, s in studies.STUDIES.items() if n != 'augment')
  assert all(studies.paper_result(v) is not None for v in variants)
  assert [studies.paper_result(v).ua for v in studies.STUDIES['lambda'].variants] == [
      63.80, 64.81, 65.71, 66.86, 60.08]
  assert [studies.paper_result(v).ua for v in studies.STUDIES['alpha'].variants] == [
      66.76, 66.85, 66.86, 66.96, 66.41]
  settings = studies.STUDIES['settings'].variants
  assert [studies.paper_result(v).setting for v in settings] == ['1', '2', '3', '4']
  # lambda 0 does not use the centres: its paper numbers do not depend on alpha.
  assert studies.paper_result(studies.Variant('x', 'stft', 0.0, 0.9)).ua == 60.97


def test_reading_study_sets_the_as_run_fields_and_nothing_else():
  written, run = studies.STUDIES['reading'].variants[1::2]
  assert (written.key, run.key) == ('mel_lambda0.3_alpha0.5',
                                    'mel_lambda0.3_alpha0.5_as_run')
  base = demo.get_config('quick')
  a, b = ablate.variant_config(base, written), ablate.variant_config(base, run)
  assert a.to_json() == ablate.variant_config(base, studies.STUDIES['settings']
                                              .variants[1]).to_json()
  assert b.model.gru_cell == 'tf1' and b.eval_cadence == 'code'
  assert b.num_train_steps == a.num_train_steps == 100  # the quick size kept
  for dotted, value in as_run.AS_RUN.items():
    node_a, node_b = a, b
    for part in dotted.split('.'):
      node_a, node_b = node_a[part], node_b[part]
    assert node_b == value and node_a != value, dotted


def _summary(uas):
  """A crossval summary with UA `uas[seed][fold]`."""
  return report.fold_summary(
      [{'fold': f'fold{k}', 'seed': s, 'ua': ua, 'wa': ua,
        'confusion': [[1, 0], [0, 1]]}
       for s, per_fold in enumerate(uas) for k, ua in enumerate(per_fold)],
      ['a', 'b'])


def test_reading_report_pairs_runs_and_compares_the_gains():
  study = studies.STUDIES['reading']
  uas = {'setting1_as_written': [[.50, .60], [.55, .40]],
         'setting2_as_written': [[.60, .62], [.50, .50]],  # gains .10 .02 -.05 .10
         'setting1_as_run': [[.40, .60], [.50, .50]],
         'setting2_as_run': [[.60, .70], [.55, .60]]}  # gains .20 .10 .05 .10
  summaries = {name: _summary(u) for name, u in uas.items()}
  rows = [ablate_report.variant_row(study, v, summaries[v.name], [0.5])
          for v in study.variants]
  text = ablate_report.markdown(study, rows, summaries, [], demo.get_config(),
                                [0, 1], None)
  # Written gain: mean of .10 .02 -.05 .10 = 4.25 points, 3 of 4 better.
  assert 'Centre loss on mel input (lambda 0.3 vs 0): UA +4.25 points' in text
  assert 'std 7.23 over 4 pairs, better in 3' in text
  assert 'Centre loss on mel, as run input' in text
  # As run minus as written, lambda 0: -.10 0 -.05 +.10 -> -1.25 points.
  assert 'As run minus as written, mel lambda 0: UA -1.25 points' in text
  # Gains as run minus as written: .10 .08 .10 0 -> +7.00, 3 of 4 larger.
  assert ("The centre loss' UA gain (lambda 0.3 minus 0), as run minus as "
          'written, mel: +7.00 points') in text
  assert 'larger as run in 3' in text
