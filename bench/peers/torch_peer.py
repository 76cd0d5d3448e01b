# The project's reference PyTorch peer: the same model and training step in
# plain PyTorch, the speed peer `bench/train_step.py --peer` runs beside
# jaxser. It lives in a sub-folder so that `./launch.sh bench` (which runs
# bench/*.py) does not run it as a benchmark of its own.
"""PyTorch peer of the reference CNN-BiGRU-center-loss model, for side-by-side speed.

It mirrors the reference layout (conv 48@7x7/2 without pooling, then 64, 80, 96
@3x3 each followed by 2x2 max-pooling, VALID padding, BiGRU 128 with sequence
lengths, FC1 64 + PReLU, FC2) and one training step: class-weighted softmax
cross-entropy + lambda * class-weighted center loss, Adam 3e-4, plus the
moving-average center update. It is what a researcher would write in PyTorch,
eager mode, no tricks.

Usage (CPU build of torch is enough):
  python torch_peer.py --batch 32 --frames 400 --bins 128 --steps 5
Prints one line: 'torch_peer utt_per_s=<float> step_s=<float> ...'.
"""
import argparse
import time

import torch
from torch import nn


class Peer(nn.Module):

  def __init__(self, bins, classes=4):
    super().__init__()
    self.convs = nn.ModuleList([
        nn.Conv2d(1, 48, 7, 2), nn.Conv2d(48, 64, 3), nn.Conv2d(64, 80, 3),
        nn.Conv2d(80, 96, 3)])
    self.pool = [False, True, True, True]
    f = bins
    for conv, pool in zip(self.convs, self.pool):
      f = 1 + (f - conv.kernel_size[1]) // conv.stride[1]
      if pool:
        f = 1 + (f - 2) // 2
    self.gru = nn.GRU(96 * f, 128, batch_first=True, bidirectional=True)
    self.fc1 = nn.Linear(256, 64)
    self.act = nn.PReLU()
    self.fc2 = nn.Linear(64, classes)

  def forward(self, x, lengths):
    x = x[:, None]  # [B, 1, T, F]
    for conv, pool in zip(self.convs, self.pool):
      x = conv(x)
      lengths = 1 + (lengths - conv.kernel_size[0]) // conv.stride[0]
      t = torch.arange(x.shape[2])[None, :]
      x = x * (t < lengths[:, None]).to(x.dtype)[:, None, :, None]
      x = torch.relu(x)
      if pool:
        x = nn.functional.max_pool2d(x, 2)
        lengths = 1 + (lengths - 2) // 2
    b, c, t, f = x.shape
    x = x.permute(0, 2, 1, 3).reshape(b, t, c * f)
    packed = nn.utils.rnn.pack_padded_sequence(
        x, lengths.clamp(min=1), batch_first=True, enforce_sorted=False)
    _, h = self.gru(packed)
    z = self.act(self.fc1(torch.cat([h[0], h[1]], -1)))
    return self.fc2(z), z


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--frames', type=int, default=400)
  p.add_argument('--bins', type=int, default=128)
  p.add_argument('--steps', type=int, default=5)
  p.add_argument('--threads', type=int, default=0)
  a = p.parse_args()
  if a.threads:
    torch.set_num_threads(a.threads)
  torch.manual_seed(0)
  model = Peer(a.bins)
  opt = torch.optim.Adam(model.parameters(), 3e-4)
  centers = torch.zeros(4, 64)
  weights = torch.tensor([1.0, 1.5, 1.0, 1.5])
  lam, alpha = 0.3, 0.5
  x = torch.randn(a.batch, a.frames, a.bins)
  lengths = torch.randint(a.frames // 2, a.frames + 1, (a.batch,))
  lengths[0] = a.frames
  y = torch.randint(0, 4, (a.batch,))

  def step():
    nonlocal centers
    opt.zero_grad()
    logits, z = model(x, lengths)
    w = weights[y]
    ce = (nn.functional.cross_entropy(logits, y, reduction='none') * w).sum() / w.sum()
    cl = (((z - centers[y]) ** 2).sum(-1) * w).sum() / w.sum()
    (ce + lam * cl).backward()
    opt.step()
    with torch.no_grad():
      for j in range(4):
        m = y == j
        if m.any():
          centers[j] = (1 - alpha) * centers[j] + alpha * z[m].mean(0)

  step()  # warm-up
  t0 = time.perf_counter()
  for _ in range(a.steps):
    step()
  dt = (time.perf_counter() - t0) / a.steps
  print(f'torch_peer utt_per_s={a.batch / dt:.2f} step_s={dt:.4f} batch={a.batch} '
        f'frames={a.frames} bins={a.bins} threads={torch.get_num_threads()}')


if __name__ == '__main__':
  main()
