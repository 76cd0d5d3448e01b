"""The paper's model and losses on the synthesised demo corpus, sized for a 2-core CPU.

  ./launch.sh demo
  python -m jaxser.main --config=configs/demo.py --workdir=workdir/demo
"""

from configs import default


def get_config():
  config = default.get_config()
  config.corpus = 'demo'
  config.protocol = 'loso'  # the demo has sessions of two speakers
  config.fold = 0
  config.num_train_steps = 300
  config.eval_start_step = 100
  config.eval_every_steps = 25
  config.checkpoint_every_steps = 50
  config.features.max_frames = 600  # demo utterances are under 6 s
  config.buckets = (100, 200, 300, 400, 600)
  return config
