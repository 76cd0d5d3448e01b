"""Features computed in the train step from cached waveforms: equal to the
feature cache's, waveform augmentation inside the jitted step, exact resume."""

import jax
import numpy as np

from jaxser import config_lib
from jaxser import evaluate
from jaxser import features
from jaxser import input_pipeline
from jaxser import steps
from jaxser import train
from jaxser.data import cache as cache_lib
from jaxser.data import manifest

from conftest import assert_resumes_exactly
from conftest import tiny_run_config


def test_features_in_the_step_equal_the_cached_features(tone_manifest, tmp_path):
  params = features.FeatureParams(n_mels=64, max_frames=60)  # some are cropped
  utterances, _ = manifest.read(tone_manifest)
  feats = cache_lib.FeatureCache.build(utterances, params, str(tmp_path))
  waves = cache_lib.FeatureCache.build(utterances, params, str(tmp_path), waveforms=True)
  assert waves.ids == feats.ids and waves.folder.name.startswith('wave-')
  assert cache_lib.verify(waves.folder, waves.ids, params, waveforms=True) is None
  assert 'holds waveforms' in cache_lib.verify(waves.folder, waves.ids, params)
  rows = np.arange(8)
  examples = input_pipeline.Examples(waves, np.zeros(len(waves), np.int32),
                                     np.arange(len(waves)), None, wave=params)
  batch = examples.batch(rows, batch_size=10, buckets=(40, 60))
  assert batch['waveforms'].shape == (10, input_pipeline.waveform_width(60, params))
  hparams = {'mean': np.zeros(64, np.float32), 'inv_std': np.ones(64, np.float32)}
  out, frame_lengths = jax.device_get(steps.batch_features(
      jax.random.key(0), batch, hparams, steps.WaveInput(params)))
  assert out.shape == (10, 60, 64)
  worst = 0.0
  for row in rows:
    cached = feats[int(row)]
    assert frame_lengths[row] == len(cached)
    worst = max(worst, float(np.abs(out[row, :len(cached)] - cached).max()))
    assert not out[row, len(cached):].any()  # padding frames are 0
  assert worst <= 1e-4, worst
  assert not out[8:].any()  # padding rows too
  assert max(frame_lengths[:8]) == 60 and min(frame_lengths[:8]) < 60


def test_a_run_with_waveform_augmentation_resumes_exactly(tone_manifest, tmp_path):
  config = tiny_run_config(tone_manifest, tmp_path)
  config.wave_augment.update(noise_probability=0.5, speed_factors='0.9,1.0,1.1',
                             reverb_probability=0.5)
  assert config_lib.features_in_step(config)
  first = assert_resumes_exactly(config, tmp_path)
  # What reads a finished run's training split (jaxser.augment, the
  # ablation's figures) reads its features, not the waveforms.
  embeddings = evaluate.run_embeddings(str(tmp_path / 'straight'), ('train',))
  assert embeddings['train']['z'].shape == (24, config.model.embedding_dim)
  # Features in the step without augmentation train as the feature cache
  # does (to float tolerance); the augmentation changes the loss.
  config.wave_augment.update(noise_probability=0.0, speed_factors='',
                             reverb_probability=0.0, features_in_step=True)
  train.train_and_evaluate(config, str(tmp_path / 'in_step'))
  config.wave_augment.features_in_step = False
  train.train_and_evaluate(config, str(tmp_path / 'cached'))
  assert abs(first('in_step')['loss'] - first('cached')['loss']) < 1e-4
  assert abs(first('straight')['loss'] - first('cached')['loss']) > 1e-3
