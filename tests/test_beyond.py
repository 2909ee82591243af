"Plain pytest tests of CutMix, the functional API and Manifold MixUp, beside their notebooks' own."
import math, pytest, torch, torch.nn as nn, torch.nn.functional as F
from fastcore.test import test_close as close
from fastai.basics import Learner, Callback, accuracy, set_seed
import fastai.callback.progress, fastai.callback.schedule  # Learner.no_bar, fit_one_cycle
from mixup_cb.core import sample_lam, sample_perm, mix
from mixup_cb.callback import MixCallback
from mixup_cb.cutmix import sample_boxes, box_mask, box_lam, paste, cutmix_inputs, CutMixCallback, MixUpOrCutMix
from mixup_cb.functional import mixup_batch, cutmix_batch, mixed_loss
from mixup_cb.manifold import ManifoldMixUpCallback
from mixup_cb.examples import digits_dls, small_cnn

def no_hooks(model): return all(not (m._forward_hooks or m._forward_pre_hooks) for m in model.modules())

@pytest.mark.parametrize('H,W', [(8,8), (7,13), (32,32)])
def test_boxes_are_the_definition_and_at_most_half(H, W):
    lam = sample_lam(128, 1.)
    boxes = sample_boxes(lam, H, W, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    cy, cx = torch.randint(0, H, (128,), generator=g), torch.randint(0, W, (128,), generator=g)
    mask = box_mask(boxes, H, W)
    for i in range(128):
        r = math.sqrt(1-lam[i].item()); h, w = math.floor(r*H), math.floor(r*W)
        y0, x0 = cy[i].item()-h//2, cx[i].item()-w//2
        exp = [max(y0,0), min(y0+h,H), max(x0,0), min(x0+w,W)]
        assert boxes[i].tolist()==exp
        assert mask[i].sum().item()==(exp[1]-exp[0])*(exp[3]-exp[2])
    lc = box_lam(boxes, H, W)
    assert ((lc>=0.5) & (lc>=lam-1e-6)).all()
    close(lc, 1-mask.float().mean((1,2)), eps=1e-6)

def test_paste_is_new_tensor_from_partner():
    x = torch.randn(16, 3, 8, 8); x0 = x.clone(); perm, lam = sample_perm(16), sample_lam(16, 1.)
    (xm,), lc, boxes = cutmix_inputs((x,), perm, lam)
    m = box_mask(boxes, 8, 8)[:,None]
    assert torch.equal(xm, x*~m + x[perm]*m) and torch.equal(x, x0) and xm.data_ptr()!=x.data_ptr()
    with pytest.raises(ValueError, match='use MixUpCallback'): cutmix_inputs((torch.randn(16, 4),), perm, lam)

def test_functional_matches_definition_and_is_reproducible():
    x = torch.randn(12, 5)
    xm, perm, lam = mixup_batch(x, 0.7, torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    assert torch.equal(perm, sample_perm(12, generator=g)) and torch.equal(lam, sample_lam(12, 0.7, generator=g))
    close(xm, lam[:,None]*x + (1-lam[:,None])*x[perm], eps=1e-6)
    xi = torch.randn(12, 1, 8, 8)
    a, b = cutmix_batch(xi, 1., torch.Generator().manual_seed(2)), cutmix_batch(xi, 1., torch.Generator().manual_seed(2))
    assert all(torch.equal(o, p) for o,p in zip(a, b))
    pred, y = torch.randn(12, 10), torch.randint(0, 10, (12,))
    exp = lam*F.cross_entropy(pred, y, reduction='none') + (1-lam)*F.cross_entropy(pred, y[perm], reduction='none')
    close(mixed_loss(F.cross_entropy, pred, y, perm, lam), exp.mean(), eps=1e-6)

def _one_batch(learn, b):
    learn.epoch,learn.training,learn.n_epoch = 0,True,1
    learn.dl = learn.dls.train; learn._split(b)
    learn('before_fit'); learn('before_train'); learn('before_batch')

def test_cutmix_callback_corrects_lam_and_replaces():
    learn = Learner(digits_dls(bs=32), small_cnn()).cutmix(); b = learn.dls.one_batch(); x0 = b[0].clone()
    _one_batch(learn, b); cb = learn.cut_mix
    assert torch.equal(cb.lam, box_lam(cb.boxes, 8, 8)) and torch.equal(b[0], x0)
    assert torch.equal(learn.xb[0], paste(b[0], cb.perm, box_mask(cb.boxes, 8, 8)))
    learn.mixup(); learn.add_cb(MixUpOrCutMix()); learn.cutmix()
    assert [type(c) for c in learn.cbs if isinstance(c, MixCallback)]==[CutMixCallback]

def test_manifold_hook_mixes_exactly_and_is_removed():
    learn = Learner(digits_dls(bs=32), small_cnn()); m = learn.model
    learn.manifold_mixup(modules=[m[4]], use_input=False)
    seen = {}
    h1 = m[4].register_forward_hook(lambda mod, a, o: seen.__setitem__('out', o.detach().clone()))
    h2 = m[5].register_forward_pre_hook(lambda mod, a: seen.__setitem__('in', a[0].detach().clone()))
    _one_batch(learn, learn.dls.one_batch()); cb = learn.manifold_mix_up
    learn.pred = m(*learn.xb); h1.remove(); h2.remove()
    assert torch.equal(seen['in'], mix(seen['out'], cb.perm, cb.lam))
    learn('after_pred'); assert no_hooks(m)

class _RaiseIn(nn.Module):
    "A pass-through layer that raises on its 2nd training call"
    def __init__(self): super().__init__(); self.n = 0
    def forward(self, x):
        if self.training:
            self.n += 1
            if self.n==2: raise RuntimeError('mid-forward')
        return x

def test_manifold_no_hook_survives_exception_in_forward(tmp_path):
    model = nn.Sequential(*small_cnn()[:6], _RaiseIn(), *small_cnn()[6:])
    learn = Learner(digits_dls(bs=64), model, path=tmp_path).manifold_mixup(modules=[model[1]], use_input=False)
    orig = learn.loss_func
    with learn.no_logging(), learn.no_bar():
        with pytest.raises(RuntimeError, match='mid-forward'): learn.fit(1)
    assert no_hooks(model) and learn.loss_func is orig

@pytest.mark.parametrize('mk', ['cutmix', 'manifold_mixup'])
def test_real_fit(mk, tmp_path):
    set_seed(0)
    learn = getattr(Learner(digits_dls(bs=64), small_cnn(), metrics=accuracy, path=tmp_path), mk)(); orig = learn.loss_func
    with learn.no_logging(), learn.no_bar(): learn.fit_one_cycle(2, 1e-2)
    assert learn.recorder.values[-1][2] > 0.85 and learn.loss_func is orig and no_hooks(learn.model)
