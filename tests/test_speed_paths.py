"The fast paths against their definitions: no device waits, recycled memory, the cross-entropy from one log-softmax."
import pytest, torch, torch.nn as nn, torch.nn.functional as F
from fastcore.test import test_close as close
from fastai.basics import Learner, CrossEntropyLossFlat, Callback, set_seed
from fastai.torch_core import TensorImage
import fastai.callback.progress  # Learner.no_bar
import fastai.callback.core
from fastai.callback.schedule import SchedCos
from mixup_cb.all import *
from mixup_cb.mix import Recycler
import mixup_cb.loss as mloss
from mixup_cb.examples import digits_dls, small_cnn

def _definition(x, perm, lam):
    "MixUp by its formula, in float64"
    w = lam.double().view(-1, *[1]*(x.ndim-1))
    return w*x.double() + (1-w)*x.double()[perm]

# ---- sampling ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('alpha', [0.05, 0.4, 1., 4.])
def test_sample_lam_is_folded_ratio_of_the_same_gammas(alpha):
    torch.manual_seed(3); g = torch._standard_gamma(torch.full((2, 300), alpha))
    t = g[0]/(g[0]+g[1])
    torch.manual_seed(3); lam = sample_lam(300, alpha)
    close(lam, torch.maximum(t, 1-t).nan_to_num(1.), eps=1e-6)

# ---- mixing -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize('channels_last', [False, True])
def test_mix_out_equals_definition(dtype, channels_last):
    torch.manual_seed(0)
    x = torch.randn(16, 3, 8, 8).to(dtype)
    if channels_last: x = x.contiguous(memory_format=torch.channels_last)
    x0, perm, lam = x.clone(), sample_perm(16), sample_lam(16, 1.)
    rc = Recycler()
    m = mix(x, perm, lam, out=rc.empty_like(x))
    assert torch.equal(m, mix(x, perm, lam))  # bitwise the plain path
    eps = 1e-6 if dtype in (torch.float32, torch.float64) else 2e-2
    close(m.double(), _definition(x, perm, lam), eps=eps)
    assert torch.equal(x, x0) and m.dtype==dtype
    assert m.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)

@pytest.mark.parametrize('dtype', [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize('channels_last', [False, True])
def test_large_recycled_mix_equals_definition(dtype, channels_last):
    "A batch of several MB mixed into recycled memory, as the callback mixes it: bitwise the plain path, type and layout kept"
    bs = 53
    x = torch.randn(bs, 3, 150, 150).to(dtype)
    if channels_last: x = x.contiguous(memory_format=torch.channels_last)
    x = x.as_subclass(TensorImage)  # (TensorImage(x) would make a float64 x float32)
    x0, perm, lam = x.clone(), sample_perm(bs), sample_lam(bs, 1.)
    rc = Recycler()
    for _ in range(2):  # fresh memory, then recycled memory
        m = mix(x, perm, lam, out=rc.empty_like(x))
        assert type(m) is TensorImage and m.dtype==dtype
        assert torch.equal(m, mix(x, perm, lam))  # bitwise the plain path ...
        # bf16/fp16: a few ulps of inputs up to ~5 (fp16 keeps 3 more mantissa bits than bf16)
        tol = (dict(rtol=1e-6, atol=1e-6) if dtype in (torch.float32, torch.float64) else dict(rtol=1.6e-2, atol=3e-2) if dtype==torch.bfloat16
               else dict(rtol=2e-3, atol=4e-3))
        torch.testing.assert_close(m.as_subclass(torch.Tensor).double(), _definition(x, perm, lam).as_subclass(torch.Tensor), **tol)  # ... the definition
        assert m.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        del m
    assert rc.reused==1 and torch.equal(x, x0)

@pytest.mark.parametrize('dtype', [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('recycle', [False, True])
def test_chosen_path_equals_definition(dtype, channels_last, recycle, monkeypatch):
    "`mix_inputs`, the one function every MixUp path calls, on either side of RECYCLE_BYTES: exactly the plain lerp, the definition, layout kept"
    import mixup_cb.mix as mmix
    monkeypatch.setattr(mmix, 'RECYCLE_BYTES', 0 if recycle else 2**40)
    torch.manual_seed(4)
    x = torch.randn(32, 3, 12, 12).to(dtype)
    if channels_last: x = x.contiguous(memory_format=torch.channels_last)
    x0, perm, lam0 = x.clone(), sample_perm(32), sample_lam(32, 1.)
    rcs = [Recycler()]
    for _ in range(2):  # fresh memory, then (recycling) the same memory again
        (m,),lam = mmix.mix_inputs((x,), perm, lam0, rcs)
        w = lam.to(dtype).view(-1, 1, 1, 1)
        assert m.dtype==dtype and torch.equal(m, x[perm].lerp_(x, w))  # bitwise the plain path: lam*x + (1-lam)*x[perm], lerped
        eps = 1e-12 if dtype==torch.float64 else 1e-6 if dtype==torch.float32 else 2e-2
        close(m.double(), _definition(x, perm, lam), eps=eps)
        assert m.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        del m
    assert torch.equal(x, x0) and rcs[0].reused==(1 if recycle else 0)

def test_recycler_never_hands_out_memory_in_use():
    rc, x = Recycler(), torch.randn(8, 5)
    kept = []
    for i in range(20):
        o = rc.empty_like(x).fill_(i)
        if i%3==0: kept.append((i, o[2:]))  # a view of every third result stays alive
        del o
    assert all((o==i).all() for i,o in kept)
    assert rc.reused>0  # and the others were recycled
    assert rc.empty_like(torch.randn(4, 5)).shape==(4, 5)  # another size: fresh memory

# ---- the callback in a real fit ---------------------------------------------------------------------------------
class KeepMixed(Callback):
    "Keep every mixed training batch and a copy of it, as a recorder might"
    order = 101
    def before_fit(self): self.kept = []
    def before_batch(self):
        if self.training: self.kept.append((self.xb[0], self.xb[0].clone()))

def _fit(n_batches, recycle=True, cbs=(), monkeypatch=None):
    import mixup_cb.mix
    mixup_cb.mix.RECYCLE_BYTES = 0 if recycle else 2**25  # the digits' batches are small: recycle them all the same
    set_seed(42)
    learn = Learner(digits_dls(bs=64), small_cnn(), lr=1e-2).mixup(alpha=1.)
    if not recycle: monkeypatch.setattr(Recycler, 'empty_like', lambda self, x: torch.empty_like(x))
    class Stop(Callback):
        order = 102
        def after_batch(self):
            if self.training and self.iter+1>=n_batches: raise fastai.callback.core.CancelEpochException
    try:
        with learn.no_logging(), learn.no_bar(): learn.fit(1, cbs=[Stop(), *cbs])
    finally: mixup_cb.mix.RECYCLE_BYTES = 2**25
    return learn

def test_recycled_training_matches_unbuffered(monkeypatch):
    a = _fit(8)
    rc = a.mix_up.__dict__['_rcs'][0]
    assert rc.reused>=5, rc  # the memory really was reused ...
    with monkeypatch.context() as m: b = _fit(8, recycle=False, monkeypatch=m)
    assert b.mix_up.__dict__['_rcs'][0].reused==0 and b.mix_up.__dict__['_rcs'][0].st is None
    for pa,pb in zip(a.model.parameters(), b.model.parameters()):  # ... and training is bitwise the same
        assert torch.equal(pa, pb)
        assert torch.equal(pa.grad, pb.grad) if pa.grad is not None else pb.grad is None

def test_kept_batches_never_overwritten():
    keep = KeepMixed()
    learn = _fit(8, cbs=[keep])
    assert len(keep.kept)==8
    assert all(torch.equal(x, x0) for x,x0 in keep.kept)
    assert len({x.data_ptr() for x,_ in keep.kept})==8  # all alive, so all on their own memory

# ---- nothing waits on the device --------------------------------------------------------------------------------
def _raise(*a, **k): raise AssertionError('a device wait (item/cpu/tolist/numpy/bool/float/int) in the batch path')
_SYNCS = ['item', 'cpu', 'tolist', 'numpy', '__bool__', '__float__', '__int__', '__index__', '__array__']

@pytest.fixture
def no_sync(monkeypatch):
    def arm():
        for k in _SYNCS: monkeypatch.setattr(torch.Tensor, k, _raise)
    return arm

def test_no_sync_guard_can_fail(no_sync, monkeypatch):
    t = torch.ones(2)
    no_sync()
    for f in (lambda: t.sum().item(), lambda: bool(t.sum()), lambda: t.tolist(), lambda: float(t.sum()), lambda: t.numpy()):
        with pytest.raises(AssertionError, match='device wait'): f()

@pytest.mark.parametrize('loss_func', [CrossEntropyLossFlat(), nn.CrossEntropyLoss(), F.cross_entropy,
                                       CrossEntropyLossFlat(label_smoothing=0.1)])
@pytest.mark.parametrize('kw', [dict(), dict(p=0.5), dict(alpha=SchedCos(1., .1))])
def test_callback_batch_path_never_waits(no_sync, monkeypatch, loss_func, kw):
    learn = Learner(digits_dls(bs=32), small_cnn(), loss_func=loss_func).mixup(**kw)
    learn.epoch,learn.training,learn.n_epoch,learn.pct_train = 0,True,1,0.3
    learn.dl = learn.dls.train
    b = learn.dls.one_batch()
    # PyTorch's own losses refuse fastai's typed tensors (on unmixed batches too): give them plain ones
    if not isinstance(loss_func, CrossEntropyLossFlat): b = tuple(t.as_subclass(torch.Tensor) for t in b)
    learn('before_fit'); learn('before_train')
    cb, orig = learn.mix_up, learn.loss_func
    for _ in range(3):
        learn._split(b)
        no_sync()  # from here to the end of the batch, only the callback's events, the model and the loss run
        cb('before_batch')
        learn.pred = learn.model(*learn.xb); cb('after_pred')
        loss = learn.loss_func(learn.pred, *learn.yb)
        loss.backward()
        cb('after_batch')
        monkeypatch.undo()
        assert learn.loss_func is orig
        assert loss.ndim==0 and torch.isfinite(loss)

@pytest.mark.parametrize('crit', [nn.CrossEntropyLoss(), nn.BCEWithLogitsLoss(), nn.MSELoss()])
def test_mixuploss_never_waits(no_sync, crit):
    pred = torch.randn(16, 4, requires_grad=True)
    y = torch.randint(0, 4, (16,)) if isinstance(crit, nn.CrossEntropyLoss) else torch.rand(16, 4)
    lf = MixUpLoss(crit)
    no_sync()
    x = torch.randn(16, 4); perm, lam = sample_perm(16), sample_lam(16, 0.4)
    mix(x, perm, lam, out=Recycler().empty_like(x))
    lf.arm(perm, lam)(pred, y).backward()

# ---- the cross-entropy from one log-softmax against the definition ------------------------------------------------
def _by_definition(pred, y, perm, lam, w=None, reduction='mean', ignore=-100):
    "The mixed cross-entropy written out: per-sample lerps, a weighted mean divides by the lerped targets' weights"
    lm = lam.double().view(-1, *[1]*(y.ndim-1))
    ce = lambda t: F.cross_entropy(pred, t, weight=w, ignore_index=ignore, reduction='none')
    num = (lm*ce(y) + (1-lm)*ce(y[perm])).sum()
    if reduction=='sum': return num
    wt = lambda t: (torch.ones_like(t, dtype=pred.dtype) if w is None else w[t.clamp(0)])*(t!=ignore)
    return num/(lm*wt(y) + (1-lm)*wt(y[perm])).sum()

@pytest.mark.parametrize('crit', [F.cross_entropy, nn.CrossEntropyLoss(), CrossEntropyLossFlat(),
                                  nn.CrossEntropyLoss(weight=torch.rand(10, dtype=torch.float64)),
                                  nn.CrossEntropyLoss(weight=torch.rand(10, dtype=torch.float64), reduction='sum')])
def test_one_log_softmax_equals_definition(crit, monkeypatch):
    torch.manual_seed(1)
    pred, y = torch.randn(256, 10, dtype=torch.float64), torch.randint(0, 10, (256,))
    y[:7] = -100
    perm, lam = sample_perm(256), sample_lam(256, 0.4)
    # fastai's flattened losses compute float64 in float32: that case calls the loss itself, as fastai's Recorder needs
    assert mloss._one_log_softmax(crit, pred, (y,)) == (not isinstance(crit, CrossEntropyLossFlat))
    w = getattr(crit, 'weight', None)
    by_def = _by_definition(pred, y, perm, lam, w, getattr(crit, 'reduction', 'mean'))
    eps = 1e-6 if isinstance(crit, CrossEntropyLossFlat) else 1e-10
    close(mixed_loss(crit, pred, (y,), perm, lam), by_def, eps=eps)
    monkeypatch.setattr(mloss, '_one_log_softmax', lambda *a: False)  # the loss called twice: the same value
    close(mixed_loss(crit, pred, (y,), perm, lam), by_def, eps=eps)

@pytest.mark.parametrize('shape', [(64, 7), (4, 3, 5, 6)])
def test_mixed_ce_gradient_equals_definition(shape):
    "Autograd through `mixed_loss` against autograd through the definition, with class weights and ignored targets"
    torch.manual_seed(2)
    pred = torch.randn(*shape, dtype=torch.float64)
    y = torch.randint(0, shape[1], (shape[0], *shape[2:])); y.view(-1)[:3] = -100
    w = torch.rand(shape[1], dtype=torch.float64)
    perm, lam = sample_perm(shape[0]), sample_lam(shape[0], 1.)
    crit = nn.CrossEntropyLoss(weight=w)
    p1, p2 = pred.clone().requires_grad_(), pred.clone().requires_grad_()
    l1, l2 = mixed_loss(crit, p1, (y,), perm, lam), _by_definition(p2, y, perm, lam, w)
    close(l1, l2, eps=1e-12)
    g = torch.randn(())
    (l1*g).backward(); (l2*g).backward()
    close(p1.grad, p2.grad, eps=1e-12)
