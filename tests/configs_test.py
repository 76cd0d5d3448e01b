"""The configs: each builds and validates; variants change only their fields."""

import json
import os
import subprocess
import sys

import pytest

from jaxser import config_lib
from jaxser.configs import as_run, default, demo, softmax_only, stft, tiny


@pytest.mark.parametrize('module', [as_run, default, demo, softmax_only, stft, tiny])
def test_every_config_is_valid(module, tmp_path):
  config = module.get_config()
  if config.corpus != 'demo':  # the paper's configs need the corpus' folder
    config.corpus_root = str(tmp_path)
  config_lib.validate(config)


def test_the_quick_demo_changes_only_its_fields():
  config = demo.get_config()
  quick = demo.get_config('quick')
  config_lib.validate(quick)
  before = json.loads(config.to_json_best_effort())
  after = json.loads(quick.to_json_best_effort())
  changed = {k for k in after if after[k] != before[k]}
  assert changed and changed <= {k.split('.')[0] for k in demo.QUICK}
  assert quick.features.max_frames == demo.QUICK['features.max_frames']
  assert quick.model.gru_units == demo.QUICK['model.gru_units']
  with pytest.raises(ValueError, match="'slow'"):
    demo.get_config('slow')


def test_the_robust_demo_adds_only_waveform_augmentation():
  before = json.loads(demo.get_config().to_json_best_effort())
  robust = demo.get_config('robust')
  config_lib.validate(robust)
  after = json.loads(robust.to_json_best_effort())
  assert {k for k in after if after[k] != before[k]} == {'wave_augment'}
  assert config_lib.features_in_step(robust) and config_lib.wave_augment(robust).enabled
  assert not config_lib.features_in_step(demo.get_config())


def test_the_features_of_a_config_are_every_feature_parameter():
  from jaxser import features  # pylint: disable=g-import-not-at-top
  assert dict(default.get_config().features) == features.FeatureParams().to_dict()


def test_as_run_differs_from_as_written_only_in_the_authors_choices():
  written, run = default.get_config(), as_run.get_config()
  changed = {k for k, v in json.loads(run.to_json_best_effort()).items()
             if json.loads(written.to_json_best_effort())[k] != v}
  assert changed == {'model', 'center_update', 'features', 'eval_cadence'}
  assert run.features.pad_mode == 'reflect' and run.model.gru_cell == 'tf1'
  assert as_run.get_config('stft').features.kind == 'stft'
  assert as_run.get_config('stft').num_train_steps == stft.get_config().num_train_steps


def test_packaged_configs_are_selected_by_name(tmp_path):
  from jaxser import cli  # pylint: disable=g-import-not-at-top
  assert cli.packaged_configs() == ['as_run', 'default', 'demo', 'softmax_only',
                                    'stft', 'tiny']
  path = cli.config_path('demo:quick')
  assert path == os.path.join(os.path.dirname(demo.__file__), 'demo.py') + ':quick'
  assert cli.config_path('default') == default.__file__
  # Files stay files, wherever they are.
  assert cli.config_path('my/config.py:x') == 'my/config.py:x'
  assert cli.config_path('config.py') == 'config.py'
  # An unknown name is one line naming the packaged ones.
  result = subprocess.run(
      [sys.executable, '-c', 'from jaxser import cli; cli.config_path("dmeo")'],
      capture_output=True, text=True, cwd=tmp_path, check=False)
  assert result.returncode == 1
  assert result.stderr.startswith('jaxser: --config=dmeo: no config file dmeo and '
                                  'no packaged config of that name (packaged: as_run,')
