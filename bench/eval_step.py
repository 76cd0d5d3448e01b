"""Inference throughput: jaxser's batched jitted eval step against the peer.

Usage:
  python bench/eval_step.py [--peer] [--frames 400,1400] [--kinds mel,stft]
      [--batch 64] [--steps 3] [--repeats 3] [--no-memory]

The eval step of `jaxser.steps.make_steps` (logits and embeddings of a padded
batch, as `evaluate` and `predict` run it) against the PyTorch peer's forward
pass under `torch.no_grad()`, in the same process, interleaved; batch 64 as
`config.eval_batch_size`. See `bench/train_step.py` for how it measures.
"""
import train_step

if __name__ == '__main__':
  train_step.main(evaluate=True)
