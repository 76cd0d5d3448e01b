"""A tiny model and run for tests: seconds on a CPU.

  python -m jaxser.main --config=jaxser/configs/tiny.py --workdir=/tmp/tiny \
      --config.corpus=manifest --config.corpus_root=/path/manifest.csv
"""

from jaxser.configs import default


def get_config():
  config = default.get_config()
  config.corpus = 'demo'
  config.demo_utterances = 48
  config.protocol = 'random'
  config.features.n_mels = 64
  config.features.max_frames = 300
  config.model.convs = ((4, 7, 2, 0), (6, 3, 1, 2), (8, 3, 1, 2), (8, 3, 1, 2))
  config.model.gru_units = 8
  config.model.embedding_dim = 6
  config.batch_size = 8
  config.eval_batch_size = 8
  config.num_train_steps = 12
  config.warmup_steps = 3
  config.eval_start_step = 4
  config.eval_every_steps = 4
  config.log_every_steps = 4
  config.checkpoint_every_steps = 4
  config.buckets = (100, 200, 300)
  config.augment.gan_steps = 40
  config.augment.gan_batch_size = 16
  config.augment.hidden = 16
  config.augment.head_steps = 20
  config.augment.head_batch_size = 16
  config.augment.eval_every = 5
  return config
