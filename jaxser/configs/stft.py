"""The paper's setting 4: log-STFT input (513 bins), lambda 0.3, alpha 0.5.

  python -m jaxser.main --config=jaxser/configs/stft.py --workdir=/tmp/ser_stft \
      --config.corpus_root=/data/IEMOCAP_full_release
"""

from jaxser.configs import default


def get_config():
  config = default.get_config()
  config.features.kind = 'stft'
  config.num_train_steps = 2920  # authors' code
  config.eval_start_step = 400
  return config
