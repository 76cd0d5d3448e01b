"""The demo at the CPU size of `./launch.sh ablate --quick` (jaxser.ablate.QUICK).

Half-width model, 100 steps of batch 16 on the middle 2 s: about a minute a
run on a 2-core CPU. For quick comparisons with jaxser.crossval, e.g.

  python -m jaxser.crossval --config=configs/demo_quick.py --workdir=workdir/cv_q \
      --seeds=0,1,2 --folds=0 --config.center_loss_weight=0.0
"""

from configs import demo
from jaxser import ablate


def get_config():
  return ablate.quick_config(demo.get_config())
