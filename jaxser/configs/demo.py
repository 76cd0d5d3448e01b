"""The paper's model layout and losses on the synthesised demo corpus, sized for a 2-core CPU.

  ./launch.sh demo
  python -m jaxser.main --config=jaxser/configs/demo.py --workdir=workdir/demo
  python -m jaxser.main --config=jaxser/configs/demo.py:quick --workdir=workdir/q
  python -m jaxser.main --config=jaxser/configs/demo.py:robust --workdir=workdir/robust

The layers are the paper's (7x7/2 conv, three 3x3 convs with 2x2 pools,
BiGRU, FC 64 + PReLU, FC) at half the widths, trained for 300 steps of 16 on
the middle 3 s of each utterance, so the whole job takes minutes on a CPU.
The paper-size model on the demo corpus: `--config=jaxser/configs/default.py
--config.corpus=demo --config.protocol=loso`.

`demo.py:quick` is the size of `./launch.sh ablate --quick`: the whole
ablation (11 distinct runs, two of them log-STFT) on a 2-core CPU. Measured
on the shared 2-core machine with other jobs running (load ~4), batch 32 x
300 frames: the paper model takes 6.3 s a step on log-Mel and 35 s on
log-STFT, so a 30-minute budget would give each run ~30 steps. With the
quick fields a log-Mel run takes ~65 s (0.4 s a step) and a log-STFT run ~5
min (2.5 s a step), the three studies ~23 minutes at that load.

`demo.py:robust` is the demo with the waveform augmentation that measured
best out of domain (docs/results.md, section 5): noise on half the
utterances, speed 0.9/1.0/1.1, reverberation on 30 %, inside the train
step. About twice the demo's training time on a 2-core CPU.
"""

from jaxser import config_lib
from jaxser.configs import default

# The fields `quick` changes.
QUICK = {
    'num_train_steps': 100,  # 2.5 epochs of the demo's 638 training utterances
    'batch_size': 16,  # more updates for the same compute
    'warmup_steps': 10,  # lambda 0, alpha 1 first, as the paper's 20 of 3520
    'eval_start_step': 40,  # dev UA at steps 50, 60, ..., 100 selects the
    'eval_every_steps': 10,  # checkpoint
    'log_every_steps': 10,
    'checkpoint_every_steps': 50,
    'features.max_frames': 200,  # the middle 2 s (the demo's mean is 2.8 s)...
    'buckets': (200,),  # ...in one padded length: one compile per run
    'model.convs': ((24, 7, 2, 0), (32, 3, 1, 2), (40, 3, 1, 2), (48, 3, 1, 2)),
    'model.gru_units': 64,  # half the paper's widths; embedding_dim stays 64
    'plots': False,  # no per-fold PNGs (the study's figures are still made)
}

# The fields `robust` changes: waveform augmentation (`jaxser.wave_augment`).
ROBUST = {
    'wave_augment.noise_probability': 0.5,  # white, pink or babble, 5-20 dB SNR
    'wave_augment.speed_factors': '0.9,1.0,1.1',
    'wave_augment.reverb_probability': 0.3,  # RT60 0.2-0.6 s
}


def get_config(arg: str = ''):
  """The demo config; `arg` 'quick' is the CPU size of a whole ablation,
  'robust' the demo with waveform augmentation."""
  if arg not in ('', 'quick', 'robust'):
    raise ValueError(f"demo.py takes no argument, 'quick' or 'robust', got {arg!r}")
  config = default.get_config()
  config.corpus = 'demo'
  config.protocol = 'loso'  # five sessions of two speakers, both orders: 10 folds
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
  if arg == 'quick':
    config_lib.set_fields(config, QUICK)
  if arg == 'robust':
    config_lib.set_fields(config, ROBUST)
  return config
