"""The paper's setting 2: log-Mel input, lambda 0.3, alpha 0.5 (docs/method.md).

  python -m jaxser.main --config=jaxser/configs/default.py --workdir=/tmp/ser \
      --config.corpus_root=/data/IEMOCAP_full_release

Every variant (`demo.py`, `stft.py`, ...) imports this and changes a few fields.
"""

import ml_collections

from jaxser import features


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()

  # Data.
  config.corpus = 'iemocap'  # iemocap | crema_d | ravdess | emodb | tess | manifest | demo
  config.corpus_root = ''  # Folder of the corpus (the CSV file for 'manifest').
  config.classes = 'paper4'  # Label map: 'paper4' or class names 'neutral,angry,...'.
  config.strict_data = False  # Fail on any bad file instead of skipping it (reported).
  config.cache_dir = ''  # Feature cache; '' = <workdir>/../jaxser_cache.
  config.demo_utterances = 800  # Size of the synthesised demo corpus (corpus='demo').
  config.demo_seed = 0  # Seed of the demo corpus.
  config.demo_recipe = 'v1'  # v1 | v2 (more voices, random channels) | ood (never train on it).

  # Protocol: which utterances train, select (dev) and report (test).
  config.protocol = 'paper'  # paper | loso | random | given (a manifest's split column)
  config.fold = 0  # Fold of the protocol to run (crossval runs them all).
  config.split_seed = 0  # Seed of the protocol's random subsets.
  config.loso_orders = 'both'  # loso: both (each speaker of a session tests once) | one

  # Features: every `jaxser.features.FeatureParams` field, the paper's values
  # (kind mel|stft, sample_rate, n_fft, hop_length, win_length, n_mels, amin,
  # top_db, stft_offset, max_frames, pad_mode; each documented there).
  config.features = ml_collections.ConfigDict(features.FeatureParams().to_dict())

  # Model (docs/method.md, Model).
  config.model = model_config()

  # Losses and centres (docs/method.md, Losses and centres).
  config.center_loss_weight = 0.3  # lambda of equation (7); 0 = softmax only.
  config.center_alpha = 0.5  # alpha of equation (4).
  config.center_update = 'ema'  # ema (equation 4) | wen (Wen et al., authors' code).
  config.warmup_steps = 20  # Steps with lambda = 0 and alpha = 1 first.

  # Optimisation and selection (docs/method.md, Training and selection).
  config.learning_rate = 3e-4  # Adam, constant.
  config.batch_size = 32  # Global batch.
  config.num_train_steps = 3520  # 3520 for Mel, 2920 for STFT (authors' code).
  config.eval_every_steps = 11  # Dev evaluation period...
  config.eval_start_step = 200  # ...once this step is passed.
  config.eval_cadence = 'jaxser'  # jaxser: start + k * every and the last | code: the authors' loop.
  config.eval_batch_size = 64  # Batch for dev/test/predict.
  config.buckets = (100, 200, 300, 400, 600, 800, 1000, 1400)  # Padded frame lengths.
  config.seed = 0  # Parameter init and data order.

  # Augmentation of the training batches' spectrograms inside the jitted step
  # (`jaxser.input_augment`); the paper has none: all off.
  config.input_augment = input_augment_config()
  # Augmentation of the training batches' waveforms, before features that
  # are then computed inside the jitted step (`jaxser.wave_augment`): off.
  config.wave_augment = wave_augment_config()

  # Generative augmentation of a trained run's embeddings (`jaxser.augment`;
  # docs/method.md, "Generative augmentation"). Not part of the run's identity.
  config.augment = augment_config()

  # Bookkeeping.
  config.log_every_steps = 20  # Progress line and train metrics.
  config.checkpoint_every_steps = 100  # Latest-state checkpoint (for resuming).
  config.plots = True  # Confusion, PCA and curve PNGs at the end.
  return config


def model_config() -> ml_collections.ConfigDict:
  """The `config.model` fields: the paper's CNN-BiGRU."""
  model = ml_collections.ConfigDict()
  # (filters, kernel, stride, pool) per conv layer.
  model.convs = ((48, 7, 2, 0), (64, 3, 1, 2), (80, 3, 1, 2), (96, 3, 1, 2))
  model.gru_units = 128  # Units of each GRU direction.
  model.embedding_dim = 64  # FC1 units: the centre-loss feature z.
  model.share_gru_weights = False  # One cell for both directions (TF1 code).
  model.gru_cell = 'flax'  # flax (reset after the matmul) | tf1 (TF1 code).
  model.prelu = 'scalar'  # scalar (flax, from 0.01) | per_unit (Keras, from 0: TF1 code).
  model.kernel_init = 'lecun_normal'  # lecun_normal (flax) | glorot_uniform (TF1 code).
  model.utterance_norm = 'none'  # none (paper) | mean | mean_var: per-utterance, per bin.
  return model


def input_augment_config() -> ml_collections.ConfigDict:
  """The `config.input_augment` fields (`jaxser.input_augment`); all off."""
  augment = ml_collections.ConfigDict()
  augment.time_masks = 0  # SpecAugment time masks per utterance.
  augment.time_mask_width = 0  # Their largest width (frames).
  augment.freq_masks = 0  # SpecAugment frequency masks per utterance.
  augment.freq_mask_width = 0  # Their largest width (bins).
  augment.gain_db = 0.0  # Level change, U[-gain_db, gain_db] dB.
  augment.tilt_db = 0.0  # Spectral tilt across the bins, U[-t, t] dB.
  return augment


def wave_augment_config() -> ml_collections.ConfigDict:
  """The `config.wave_augment` fields (`jaxser.wave_augment`); all off."""
  augment = ml_collections.ConfigDict()
  # Features of the training batches computed in the train step from cached
  # waveforms (implied by any augmentation below; evaluation keeps the
  # feature cache).
  augment.features_in_step = False
  augment.noise_probability = 0.0  # Utterances that get noise.
  augment.noise_snr_low_db = 5.0  # Its SNR, U[low, high] dB.
  augment.noise_snr_high_db = 20.0
  augment.noise_kinds = 'white,pink,babble'  # babble: 3 others of the batch.
  augment.speed_factors = ''  # e.g. '0.9,1.0,1.1' (Kaldi's); '' keeps the speed.
  augment.reverb_probability = 0.0  # Utterances put in a synthetic room.
  augment.reverb_rt60_low_s = 0.2  # Its RT60, U[low, high] seconds.
  augment.reverb_rt60_high_s = 0.6
  return augment


def augment_config() -> ml_collections.ConfigDict:
  """The `config.augment` fields, `jaxser.augment`'s settings."""
  augment = ml_collections.ConfigDict()
  augment.variants = 'none,gan_mi,gan,noise,mixup'  # What to compare.
  augment.ratio = 1.0  # Generated vectors per real one, class-balanced.
  augment.seed = 0  # GAN init, noise, samples and the head's batches.
  augment.gan_steps = 2000  # GAN updates (one D and one G step each).
  augment.gan_batch_size = 64  # Real vectors per GAN update.
  augment.noise_dim = 16  # The generator's noise size.
  augment.hidden = 128  # Units of G's and D's two hidden layers.
  augment.learning_rate = 2e-4  # Adam (b1 0.5) of G and D.
  augment.info_weight = 1.0  # Weight of the MI term (variant gan_mi).
  augment.head_steps = 500  # FC2 updates per variant (CRNN, FC1 frozen).
  augment.head_batch_size = 64  # Vectors per FC2 update.
  augment.head_learning_rate = 1e-3  # Adam of FC2.
  augment.eval_every = 25  # Dev UA every this many FC2 updates selects FC2.
  augment.noise_sigma = 0.1  # Variant noise: z + sigma * std(z) * N(0, 1).
  augment.mixup_alpha = 0.2  # Variant mixup: Beta(alpha, alpha) weights.
  augment.condition = ''  # .npz of a condition vector per utterance id (text...); '' none.
  return augment
