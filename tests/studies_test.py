"""jaxser.studies: the named studies share runs; the paper's numbers."""

from jaxser import studies


def test_named_studies_share_runs_and_have_the_papers_numbers():
  variants = [v for study in studies.STUDIES.values() for v in study.variants]
  assert len(variants) == 14 and len({v.key for v in variants}) == 11
  assert sum(v.key == 'mel_lambda0.3_alpha0.5' for v in variants) == 3
  assert all(studies.paper_result(v) is not None for v in variants)
  assert [studies.paper_result(v).ua for v in studies.STUDIES['lambda'].variants] == [
      63.80, 64.81, 65.71, 66.86, 60.08]
  assert [studies.paper_result(v).ua for v in studies.STUDIES['alpha'].variants] == [
      66.76, 66.85, 66.86, 66.96, 66.41]
  settings = studies.STUDIES['settings'].variants
  assert [studies.paper_result(v).setting for v in settings] == ['1', '2', '3', '4']
  # lambda 0 does not use the centres: its paper numbers do not depend on alpha.
  assert studies.paper_result(studies.Variant('x', 'stft', 0.0, 0.9)).ua == 60.97
