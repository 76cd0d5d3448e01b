"""The paper's setting 1: log-Mel input, softmax cross-entropy only (lambda 0).

  python -m jaxser.main --config=jaxser/configs/softmax_only.py --workdir=/tmp/ser_softmax \
      --config.corpus_root=/data/IEMOCAP_full_release
"""

from jaxser.configs import default


def get_config():
  config = default.get_config()
  config.center_loss_weight = 0.0
  return config
