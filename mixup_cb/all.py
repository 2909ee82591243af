"The public API of mixup_cb in one import: `from mixup_cb.all import *`. The building blocks beneath it stay importable from their modules."
from .core import sample_lam, sample_perm
from .mix import mix, mix_inputs, paste, box_mask
from .hooks import InputOf, find_mix_points
from .loss import MixUpLoss, mixed_loss, target_weights
from .callback import MixRecord, MixCallback, MixUpCallback, mixing_cb
from .cutmix import CutMixCallback, MixUpOrCutMix
from .manifold import ManifoldMixUpCallback, default_modules
from .functional import mixup_batch, cutmix_batch
from .show import one_mixed_batch  # importing show adds `Learner.show_mixup`

__all__ = ['sample_lam', 'sample_perm', 'mix', 'mix_inputs', 'paste', 'box_mask', 'InputOf', 'find_mix_points', 'MixUpLoss',
           'mixed_loss', 'target_weights', 'MixRecord', 'MixCallback', 'MixUpCallback', 'mixing_cb', 'CutMixCallback',
           'MixUpOrCutMix', 'ManifoldMixUpCallback', 'default_modules', 'mixup_batch', 'cutmix_batch', 'one_mixed_batch']
