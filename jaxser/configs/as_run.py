"""The paper's setting 2 as the authors' code ran it ("as run"), log-Mel.

  python -m jaxser.crossval --config=jaxser/configs/as_run.py --workdir=/tmp/as_run \
      --config.corpus_root=/data/IEMOCAP_full_release --seeds=0,1,2,3,4 --split_seed=0

`default.py` is the paper as written; this is what the authors' TF1 code
computed where the two differ (docs/method.md): one GRU cell shared by both
directions, TF1's GRU cell, Keras' per-unit PReLU from 0, Glorot-uniform
kernels, Wen et al.'s centre update, librosa 0.6's reflected STFT edges and
the code's evaluation steps. Leave-one-session-out (`protocol='loso'`) runs
both speaker orders, as the code did, in every config.
The code repeated cross-validation over one division of the subsets:
`crossval --split_seed=0`. `as_run.py:stft` is setting 4 as run.
"""

from jaxser import config_lib
from jaxser.configs import default
from jaxser.configs import stft

# The fields where the authors' code did something else than the paper's text.
AS_RUN = {
    'model.share_gru_weights': True,  # one GRUCell object for both directions
    'model.gru_cell': 'tf1',  # reset before the candidate's matmul, gate bias 1
    'model.prelu': 'per_unit',  # tf.keras PReLU: a slope per unit, from 0
    'model.kernel_init': 'glorot_uniform',  # TF1 layers' default
    'center_update': 'wen',  # Wen et al.'s rule, as the code updates centres
    'features.pad_mode': 'reflect',  # librosa 0.6's centred frames
    'eval_cadence': 'code',  # dev after 0-based update i, i % 11 == 0, i > start
}


def get_config(arg: str = ''):
  """As run: log-Mel, or `arg` 'stft' for the log-STFT setting."""
  if arg not in ('', 'stft'):
    raise ValueError(f"as_run.py takes no argument or 'stft', got {arg!r}")
  config = stft.get_config() if arg == 'stft' else default.get_config()
  config_lib.set_fields(config, AS_RUN)
  return config
