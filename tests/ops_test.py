"""Tests for jaxser.ops: each fast kernel computes what its reference does."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxser import gru
from jaxser import ops

UNITS = 8  # GRU units of the BiGRU tests.


@pytest.mark.parametrize('shape', [(2, 9, 7, 3), (1, 8, 6, 2)])
def test_max_pool_matches_flax_max_pool_with_ties(shape):
  def reduce_window(x):
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1),
                                 (1, 2, 2, 1), 'VALID')

  def flax_max_pool(x):
    return nn.max_pool(x, (2, 2), strides=(2, 2), padding='VALID')

  rng = np.random.default_rng(0)
  # Few distinct values, so most windows hold ties (as ReLU zeros do), and
  # odd sizes, so the VALID pool drops a row and a column.
  x = jnp.asarray(rng.integers(-2, 3, size=shape), jnp.float32)
  g = jnp.asarray(rng.normal(size=reduce_window(x).shape), jnp.float32)
  out, pull = jax.vjp(lambda v: ops.max_pool(v, 2), x)
  for reference in (reduce_window, flax_max_pool):
    out_ref, pull_ref = jax.vjp(reference, x)
    np.testing.assert_array_equal(out, out_ref)
    np.testing.assert_array_equal(pull(g)[0], pull_ref(g)[0])


def test_masked_relu_gradient_is_autodiffs():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.integers(-2, 3, size=(3, 6, 4, 2)), jnp.float32)
  lengths = jnp.array([6, 2, 0])
  g = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
  plain = lambda v: jax.nn.relu(ops.mask_time(v, lengths))
  out, pull = jax.vjp(lambda v: ops.masked_relu(v, lengths), x)
  out_ref, pull_ref = jax.vjp(plain, x)
  np.testing.assert_array_equal(out, out_ref)
  np.testing.assert_array_equal(pull(g)[0], pull_ref(g)[0])


def test_mask_time():
  x = jnp.ones((3, 4, 2))
  out = ops.mask_time(x, jnp.array([4, 1, 0]))
  np.testing.assert_array_equal(out[..., 0], [[1, 1, 1, 1], [1, 0, 0, 0],
                                              [0, 0, 0, 0]])
  np.testing.assert_array_equal(out[..., 0], out[..., 1])


class FlaxBiGRU(nn.Module):
  """The BiGRU as flax's `nn.RNN(nn.GRUCell)` computes it: the reference."""
  share: bool

  @nn.compact
  def __call__(self, x, lengths):
    cell = lambda name: nn.RNN(nn.GRUCell(UNITS, name=name), return_carry=True)
    fw, bw = ((cell('gru'),) * 2 if self.share
              else (cell('gru_fw'), cell('gru_bw')))
    h_fw, _ = fw(x, seq_lengths=lengths)
    h_bw, _ = bw(x, seq_lengths=lengths, reverse=True)
    return jnp.concatenate([h_fw, h_bw], axis=-1)


class OpsBiGRU(nn.Module):
  """`gru.bigru` over `gru.GRUParams` named as the reference names its cells."""
  share: bool

  @nn.compact
  def __call__(self, x, lengths):
    if self.share:
      forward = backward = gru.GRUParams(UNITS, name='gru')
    else:
      forward = gru.GRUParams(UNITS, name='gru_fw')
      backward = gru.GRUParams(UNITS, name='gru_bw')
    return gru.bigru(x, lengths, forward(x.shape[-1]), backward(x.shape[-1]))


@pytest.mark.parametrize('share', [False, True])
def test_bigru_equals_flax_rnn(share):
  names = ('gru', 'gru') if share else ('gru_fw', 'gru_bw')
  steps, width = 8, 6  # what CRNN's tiny test layout gives 40 x 12 inputs
  reference = FlaxBiGRU(share)
  x = jax.random.normal(jax.random.key(5), (3, steps, width))
  lengths = jnp.array([steps, 3, 1])
  params = jax.jit(reference.init)(jax.random.key(0), x, lengths)['params']

  # GRUParams initialises as flax's cells would (names, shapes, numbers), so
  # seeds and checkpoints mean what they meant with nn.RNN(nn.GRUCell).
  ours_params = jax.jit(OpsBiGRU(share).init)(jax.random.key(0), x,
                                              lengths)['params']
  chex.assert_trees_all_equal(ours_params, params)

  def ours(params, x):
    return gru.bigru(x, lengths, gru.gru_weights(params[names[0]]),
                     gru.gru_weights(params[names[1]]))

  r = jax.random.normal(jax.random.key(7), (3, 2 * UNITS))

  def outputs_and_grads(f):
    loss = lambda p, x: jnp.sum(f(p, x) * r)
    return jax.jit(lambda p, x: (f(p, x), jax.grad(loss, (0, 1))(p, x)))

  theirs = lambda p, x: reference.apply({'params': p}, x, lengths)
  chex.assert_trees_all_close(outputs_and_grads(ours)(params, x),
                              outputs_and_grads(theirs)(params, x),
                              rtol=0, atol=1e-5)
  # The module applies the same function.
  chex.assert_trees_all_close(
      OpsBiGRU(share).apply({'params': params}, x, lengths),
      theirs(params, x), rtol=0, atol=1e-5)


def _tf1_gru_numpy(x, length, gates, gates_bias, cand, cand_bias, reverse):
  """TF1's GRUCell over the valid steps, as TF1 writes it (float64 NumPy)."""
  sigmoid = lambda v: 1.0 / (1.0 + np.exp(-v))
  h = np.zeros(gates.shape[1] // 2)
  order = range(length - 1, -1, -1) if reverse else range(length)
  for t in order:
    value = sigmoid(np.concatenate([x[t], h]) @ gates + gates_bias)
    r, u = np.split(value, 2)
    c = np.tanh(np.concatenate([x[t], r * h]) @ cand + cand_bias)
    h = u * h + (1.0 - u) * c
  return h


@pytest.mark.parametrize('share', [False, True])
def test_bigru_reset_before_equals_tf1_equations(share):
  steps, width = 7, 5
  names = ('gru', 'gru') if share else ('gru_fw', 'gru_bw')
  x = jax.random.normal(jax.random.key(3), (3, steps, width))
  lengths = jnp.array([steps, 4, 1])

  class TF1BiGRU(nn.Module):
    @nn.compact
    def __call__(self, x, lengths):
      fw = gru.TF1GRUParams(UNITS, name=names[0])
      bw = fw if share else gru.TF1GRUParams(UNITS, name=names[1])
      return gru.bigru(x, lengths, fw(x.shape[-1]), bw(x.shape[-1]),
                       reset_before=True)

  variables = TF1BiGRU().init(jax.random.key(0), x, lengths)
  params = variables['params']
  assert len(params) == (1 if share else 2)  # one cell's parameters shared
  cell = params[names[0]]
  assert cell['gates_kernel'].shape == (width + UNITS, 2 * UNITS)
  np.testing.assert_array_equal(cell['gates_bias'], 1.0)  # TF1's gate bias
  out = np.asarray(TF1BiGRU().apply(variables, x, lengths))
  for b in range(3):
    for direction, name in enumerate(names):
      p = {k: np.asarray(v, np.float64) for k, v in params[name].items()}
      want = _tf1_gru_numpy(np.asarray(x[b], np.float64), int(lengths[b]),
                            p['gates_kernel'], p['gates_bias'],
                            p['candidate_kernel'], p['candidate_bias'],
                            reverse=direction == 1)
      got = out[b, direction * UNITS:(direction + 1) * UNITS]
      np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize('cell', ['flax', 'tf1'])
def test_shared_bigru_is_symmetric_under_reversal(cell):
  """One set of weights for both directions: reversing each sequence's valid
  part swaps the two halves of the readout (the forward state at the last
  valid step of x is the backward state at step 0 of its reversal)."""
  steps, width = 7, 5
  x = jax.random.normal(jax.random.key(11), (3, steps, width))
  lengths = jnp.array([steps, 4, 1])
  reversed_x = jnp.stack([
      jnp.concatenate([x[b, :int(n)][::-1], x[b, int(n):]])
      for b, n in enumerate(lengths)])

  class SharedBiGRU(nn.Module):
    @nn.compact
    def __call__(self, x, lengths):
      params = (gru.TF1GRUParams if cell == 'tf1' else gru.GRUParams)(UNITS, name='gru')
      weights = params(x.shape[-1])
      return gru.bigru(x, lengths, weights, weights, reset_before=cell == 'tf1')

  variables = SharedBiGRU().init(jax.random.key(0), x, lengths)
  assert list(variables['params']) == ['gru']  # exactly one cell's parameters
  out = SharedBiGRU().apply(variables, x, lengths)
  out_reversed = SharedBiGRU().apply(variables, reversed_x, lengths)
  np.testing.assert_allclose(out_reversed[:, :UNITS], out[:, UNITS:], rtol=0, atol=1e-5)
  np.testing.assert_allclose(out_reversed[:, UNITS:], out[:, :UNITS], rtol=0, atol=1e-5)
  # Not trivially so: for sequences longer than one step the halves differ.
  assert np.abs(out[:2, :UNITS] - out[:2, UNITS:]).max() > 1e-3
