"""The paper's model layout and losses on the synthesised demo corpus, sized for a 2-core CPU.

  ./launch.sh demo
  python -m jaxser.main --config=configs/demo.py --workdir=workdir/demo

The layers are the paper's (7x7/2 conv, three 3x3 convs with 2x2 pools,
BiGRU, FC 64 + PReLU, FC) at half the widths, trained for 300 steps of 16 on
the middle 3 s of each utterance, so the whole job takes minutes on a CPU.
The paper-size model on the demo corpus: `--config=configs/default.py
--config.corpus=demo --config.protocol=loso`.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.corpus = 'demo'
  config.protocol = 'loso'  # five sessions of two speakers: dev one, test the other
  config.fold = 0
  config.model.convs = ((24, 7, 2, 0), (32, 3, 1, 2), (40, 3, 1, 2), (48, 3, 1, 2))
  config.model.gru_units = 64
  config.batch_size = 16
  config.num_train_steps = 300
  config.warmup_steps = 20
  config.eval_start_step = 100
  config.eval_every_steps = 20
  config.log_every_steps = 20
  config.checkpoint_every_steps = 50
  config.features.max_frames = 300  # the middle 3 s (demo utterances: mean 2.8 s)
  config.buckets = (200, 300)
  return config
