"""Tests for jaxser.models: length arithmetic, padding invariance, readout."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxser import models

# A tiny layout for the tests that do not need the paper's sizes.
TINY_CONVS = (models.ConvSpec(features=4, kernel=3, stride=2),
              models.ConvSpec(features=6, kernel=3, stride=1, pool=2))
TINY = dict(convs=TINY_CONVS, gru_units=8, embedding_dim=5, num_classes=3)


def _init(model, frames, bins, seed=0):
  features = jnp.zeros((1, frames, bins), jnp.float32)
  return jax.jit(model.init)(jax.random.key(seed), features,
                             jnp.array([frames]))


# Compiling `init` costs seconds on CPU; each configuration is built once.
# The parameters do not depend on the number of frames.
_MODELS = {
    'tiny': (models.CRNN(**TINY), 12),
    'tiny_shared': (models.CRNN(share_gru_weights=True, **TINY), 12),
    'paper_128': (models.CRNN(), 128),
    'paper_513': (models.CRNN(), 513),
}


@functools.cache
def _variables(name):
  model, bins = _MODELS[name]
  return _init(model, 49, bins)


def _num_params(model, frames, bins):
  variables = jax.eval_shape(lambda: _init(model, frames, bins))
  return sum(x.size for x in jax.tree_util.tree_leaves(variables))


def test_paper_min_frames_is_49():
  assert models.min_frames(models.PAPER_CONVS) == 49
  assert models.output_length(49) == 1
  assert models.output_length(48) < 1
  assert models.output_length(np.array([49, 50, 1400])).tolist() == [1, 1, 85]


@pytest.mark.parametrize('convs', [
    models.PAPER_CONVS, TINY_CONVS,
    (models.ConvSpec(8, 5, 3, 3), models.ConvSpec(8, 2, 2, 0)),
])
def test_min_frames_is_the_shortest_input_with_one_step(convs):
  brute = next(n for n in range(1, 1000) if models.output_length(n, convs) >= 1)
  assert models.min_frames(convs) == brute


@pytest.mark.parametrize('bins,width', [(128, 480), (513, 2880)])
def test_paper_shapes_at_1400_frames(bins, width):
  assert models.sequence_shape(1400, bins) == (85, width)
  model = models.CRNN()
  features = jax.ShapeDtypeStruct((2, 1400, bins), jnp.float32)
  lengths = jax.ShapeDtypeStruct((2,), jnp.int32)
  variables = jax.eval_shape(model.init, jax.random.key(0), features, lengths)
  (logits, z), state = jax.eval_shape(
      lambda v, x, n: model.apply(v, x, n, mutable=['intermediates']),
      variables, features, lengths)
  assert state['intermediates']['gru_inputs'][0].shape == (2, 85, width)
  assert logits.shape == (2, 4) and z.shape == (2, 64)


def test_paper_parameter_counts():
  # The numbers quoted in the README.
  assert _num_params(models.CRNN(), 60, 128) == 630_165
  assert _num_params(models.CRNN(), 60, 513) == 2_473_365


def test_paper_parameter_tree():
  # The names and shapes checkpoints hold: changing them breaks restores.
  gru = {'ir': {'kernel': (480, 128), 'bias': (128,)},
         'iz': {'kernel': (480, 128), 'bias': (128,)},
         'in': {'kernel': (480, 128), 'bias': (128,)},
         'hr': {'kernel': (128, 128)}, 'hz': {'kernel': (128, 128)},
         'hn': {'kernel': (128, 128), 'bias': (128,)}}
  expected = {
      'conv1': {'kernel': (7, 7, 1, 48), 'bias': (48,)},
      'conv2': {'kernel': (3, 3, 48, 64), 'bias': (64,)},
      'conv3': {'kernel': (3, 3, 64, 80), 'bias': (80,)},
      'conv4': {'kernel': (3, 3, 80, 96), 'bias': (96,)},
      'gru_fw': gru, 'gru_bw': gru,
      'fc1': {'kernel': (256, 64), 'bias': (64,)},
      'prelu': {'negative_slope': ()},
      'fc2': {'kernel': (64, 4), 'bias': (4,)},
  }
  variables = jax.eval_shape(lambda: _init(models.CRNN(), 60, 128))
  assert list(variables) == ['params']
  shapes = jax.tree_util.tree_map(lambda x: x.shape, variables['params'])
  assert shapes == expected


def test_shared_gru_has_one_cell():
  shared = models.CRNN(share_gru_weights=True)
  params = jax.eval_shape(lambda: _init(shared, 60, 128))['params']
  assert 'gru' in params and 'gru_fw' not in params and 'gru_bw' not in params
  one_cell = 3 * (480 * 128 + 128) + 3 * 128 * 128 + 128
  assert _num_params(shared, 60, 128) == 630_165 - one_cell


@pytest.mark.parametrize('bins', [128, 513])
def test_paper_model_is_padding_invariant(bins):
  model = models.CRNN()
  rng = np.random.default_rng(bins)
  variables = _variables(f'paper_{bins}')
  apply = jax.jit(model.apply)
  # Three utterances in a batch padded to 112 frames; the padding holds
  # garbage, not zeros, so that only the lengths can keep it out.
  lengths = np.array([112, 71, 30], np.int32)
  batch = rng.normal(size=(3, 112, bins)).astype(np.float32) * 3
  logits_b, z_b = apply(variables, batch, lengths)
  for i in (1, 2):  # alone: no padding at all
    n = lengths[i]
    logits_1, z_1 = apply(variables, batch[i:i + 1, :n], lengths[i:i + 1])
    np.testing.assert_allclose(logits_b[i], logits_1[0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(z_b[i], z_1[0], rtol=0, atol=1e-5)
  # Not a vacuous pass: different utterances give different embeddings.
  assert np.abs(np.asarray(z_b[0] - z_b[1])).max() > 1e-3


def test_short_input_equals_explicit_zero_padding():
  apply = jax.jit(models.CRNN().apply)
  variables = _variables('paper_128')
  short = jax.random.normal(jax.random.key(1), (1, 10, 128))
  logits, z = apply(variables, short, jnp.array([10]))
  padded = jnp.pad(short, ((0, 0), (0, 39), (0, 0)))
  logits_p, z_p = apply(variables, padded, jnp.array([49]))
  assert np.isfinite(np.asarray(logits)).all()
  np.testing.assert_allclose(logits, logits_p, rtol=0, atol=1e-6)
  np.testing.assert_allclose(z, z_p, rtol=0, atol=1e-6)


def test_pad_to_min_frames():
  features = jnp.ones((3, 20, 2))
  out, lengths = models.pad_to_min_frames(features, jnp.array([20, 5, 0]))
  assert out.shape == (3, 49, 2)
  assert lengths.tolist() == [49, 49, 49]
  assert lengths.dtype == jnp.int32
  np.testing.assert_array_equal(out[:, :, 0].sum(axis=1), [20, 5, 0])
  # Long enough: the shape is kept, padding frames zeroed, lengths clipped.
  long = jnp.ones((2, 60, 2))
  out, lengths = models.pad_to_min_frames(long, jnp.array([55, 70]))
  assert out.shape == (2, 60, 2)
  assert lengths.tolist() == [55, 60]
  np.testing.assert_array_equal(out[:, :, 0].sum(axis=1), [55, 60])


@pytest.mark.parametrize('share', [False, True])
def test_bigru_readout_matches_a_step_by_step_loop(share):
  model = models.CRNN(share_gru_weights=share, **TINY)
  bins, frames = 12, 40
  features = jax.random.normal(jax.random.key(2), (2, frames, bins))
  frame_lengths = jnp.array([40, 27])
  variables = _variables('tiny_shared' if share else 'tiny')
  (logits, z), state = jax.jit(
      lambda v, x, n: model.apply(v, x, n, mutable=['intermediates']))(
          variables, features, frame_lengths)
  seq = state['intermediates']['gru_inputs'][0]  # [B, T', D]
  steps = models.output_length(frame_lengths, TINY_CONVS)
  assert steps.tolist() == [8, 5] and seq.shape[1] == 8
  params = jax.tree_util.tree_map(np.asarray, variables['params'])
  seq = np.asarray(seq)

  def run(p, xs):
    """The GRU equations of flax.linen.GRUCell, one step at a time."""
    dense = lambda name, v: v @ p[name]['kernel'] + p[name].get('bias', 0)
    sigmoid = lambda v: 1 / (1 + np.exp(-v))
    h = np.zeros((TINY['gru_units'],), np.float32)
    for x in xs:
      r = sigmoid(dense('ir', x) + dense('hr', h))
      u = sigmoid(dense('iz', x) + dense('hz', h))
      n = np.tanh(dense('in', x) + r * dense('hn', h))
      h = (1 - u) * n + u * h
    return h

  for b in range(2):
    valid = seq[b, :steps[b]]
    h_fw = run(params['gru' if share else 'gru_fw'], valid)
    h_bw = run(params['gru' if share else 'gru_bw'], valid[::-1])
    h = np.concatenate([h_fw, h_bw])
    pre = h @ params['fc1']['kernel'] + params['fc1']['bias']
    z_ref = np.where(pre >= 0, pre, params['prelu']['negative_slope'] * pre)
    logits_ref = z_ref @ params['fc2']['kernel'] + params['fc2']['bias']
    np.testing.assert_allclose(z[b], z_ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(logits[b], logits_ref, rtol=0, atol=1e-5)


def test_conv_outputs_beyond_length_do_not_leak():
  """A frame just past an utterance's length changes nothing."""
  model = models.CRNN(**TINY)
  features = jax.random.normal(jax.random.key(3), (1, 40, 12))
  variables = _variables('tiny')
  lengths = jnp.array([30])
  poked = features.at[:, 30:].set(1e3)
  apply = jax.jit(model.apply)
  out = apply(variables, features, lengths)
  chex.assert_trees_all_close(apply(variables, poked, lengths), out,
                              atol=0, rtol=0)
  # ...while one frame inside it does.
  inside = features.at[:, 20].set(1e3)
  assert not np.allclose(apply(variables, inside, lengths)[1], out[1])


def test_gradients_are_finite_with_padding_examples():
  model = models.CRNN(**TINY)
  features = jax.random.normal(jax.random.key(4), (3, 40, 12))
  variables = _variables('tiny')

  def loss(params):
    logits, z = model.apply({'params': params}, features, jnp.array([40, 3, 0]))
    return jnp.sum(logits) + jnp.sum(z)

  grads = jax.jit(jax.grad(loss))(variables['params'])
  assert all(np.isfinite(np.asarray(g)).all()
             for g in jax.tree_util.tree_leaves(grads))


def test_apply_traces_once_per_shape():
  model = models.CRNN(**TINY)
  variables = _variables('tiny')

  @jax.jit
  @chex.assert_max_traces(n=1)
  def apply(variables, features, lengths):
    return model.apply(variables, features, lengths)

  for seed, lengths in enumerate(([40, 2], [13, 39], [0, 40])):
    features = jax.random.normal(jax.random.key(seed), (2, 40, 12))
    logits, _ = apply(variables, features, jnp.array(lengths))
    assert np.isfinite(np.asarray(logits)).all()


def test_bfloat16_compute():
  model = models.CRNN(dtype=jnp.bfloat16, **TINY)
  variables = _variables('tiny')
  assert all(p.dtype == jnp.float32
             for p in jax.tree_util.tree_leaves(variables))
  logits, z = jax.jit(model.apply)(variables, jnp.ones((2, 40, 12)),
                                   jnp.array([40, 7]))
  assert logits.shape == (2, 3) and z.shape == (2, 5)
  assert np.isfinite(np.asarray(logits, np.float32)).all()


@pytest.mark.parametrize('share', [False, True])
def test_gru_parameters_are_flax_gru_cells(share):
  """CRNN's GRU parameters are where, and what, flax's `nn.GRUCell`s put.

  So seeds and checkpoints mean what they meant with nn.RNN(nn.GRUCell);
  tests/ops_test.py checks that the BiGRU computes what flax's does.
  """
  names = ('gru',) if share else ('gru_fw', 'gru_bw')

  class FlaxCells(nn.Module):

    @nn.compact
    def __call__(self, x):
      for name in names:
        nn.RNN(nn.GRUCell(TINY['gru_units'], name=name))(x)

  width = models.sequence_shape(40, 12, TINY_CONVS)[1]
  params = jax.jit(FlaxCells().init)(jax.random.key(0),
                                     jnp.zeros((1, 1, width)))['params']
  crnn = _variables('tiny_shared' if share else 'tiny')['params']
  for name in names:
    chex.assert_trees_all_equal(crnn[name], params[name])


def test_per_unit_prelu_is_keras_prelu_from_zero():
  model = models.CRNN(**TINY, prelu='per_unit')
  variables = _init(model, 40, 12)
  slope = variables['params']['prelu']['negative_slope']
  assert slope.shape == (TINY['embedding_dim'],) and np.all(np.asarray(slope) == 0)
  x = jnp.array([[-2.0, -0.5, 0.0, 1.5, 3.0]])
  prelu = models.PerUnitPReLU()
  a = jnp.array([0.0, 0.1, 0.2, 0.3, 0.4])
  np.testing.assert_allclose(prelu.apply({'params': {'negative_slope': a}}, x),
                             [[0.0, -0.05, 0.0, 1.5, 3.0]], rtol=1e-6)
  # With zero slopes the embedding is the ReLU of FC1's output.
  features = jax.random.normal(jax.random.key(2), (2, 40, 12))
  _, z = model.apply(variables, features, jnp.array([40, 30]))
  assert np.all(np.asarray(z) >= 0)


def test_glorot_uniform_kernels_are_tf1s():
  model = models.CRNN(**TINY, kernel_init='glorot_uniform')
  params = _init(model, 40, 12)['params']
  kernel = np.asarray(params['conv1']['kernel'])  # [3, 3, 1, 4]
  fan_in, fan_out = 3 * 3 * 1, 3 * 3 * 4
  limit = np.sqrt(6.0 / (fan_in + fan_out))
  assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.5 * limit
  dense = np.asarray(params['fc2']['kernel'])  # [5, 3]
  assert np.abs(dense).max() <= np.sqrt(6.0 / (5 + 3))
  # The default is flax's (LeCun normal): another draw.
  default = np.asarray(_init(models.CRNN(**TINY), 40, 12)['params']['conv1']['kernel'])
  assert not np.allclose(default, kernel)
  with pytest.raises(ValueError, match="kernel_init='he'"):
    _init(models.CRNN(**TINY, kernel_init='he'), 40, 12)


def test_the_authors_as_run_model_is_padding_invariant():
  # TF1's GRU cell shared by both directions, Keras' PReLU, Glorot kernels:
  # the model of the authors' code keeps padding out as the default does.
  model = models.CRNN(**TINY, gru_cell='tf1', share_gru_weights=True,
                      prelu='per_unit', kernel_init='glorot_uniform')
  variables = _init(model, 40, 12)
  params = variables['params']
  assert set(params['gru']) == {'gates_kernel', 'gates_bias', 'candidate_kernel',
                                'candidate_bias'} and 'gru_fw' not in params
  rng = np.random.default_rng(9)
  lengths = np.array([56, 41, 20], np.int32)
  batch = rng.normal(size=(3, 56, 12)).astype(np.float32) * 3
  apply = jax.jit(model.apply)
  logits_b, z_b = apply(variables, batch, lengths)
  for i in (1, 2):
    n = lengths[i]
    logits_1, z_1 = apply(variables, batch[i:i + 1, :n], lengths[i:i + 1])
    np.testing.assert_allclose(logits_b[i], logits_1[0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(z_b[i], z_1[0], rtol=0, atol=1e-5)
  assert np.abs(np.asarray(logits_b[0] - logits_b[1])).max() > 1e-4
  with pytest.raises(ValueError, match="gru_cell='keras'"):
    _init(models.CRNN(**TINY, gru_cell='keras'), 40, 12)
