"Property tests (Hypothesis) of the mixing primitives, the mixed loss and one mixed batch of the callback."
import pytest, torch, torch.nn as nn, torch.nn.functional as F
from hypothesis import given, settings, strategies as st, HealthCheck
from fastai.basics import Learner, CrossEntropyLossFlat, BCEWithLogitsLossFlat, MSELossFlat
from mixup_cb.all import *
from mixup_cb.loss import loss_reduction

# ~1-3 s per property on 2 CPUs; the whole file well under 30 s
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FLOATS = [torch.float16, torch.bfloat16, torch.float32, torch.float64]

bss = st.integers(1, 64)  # odd sizes and 1 included
dtypes = st.sampled_from(FLOATS)
# Tiny to large: 1e-8 (mass at 0 and 1) .. 1e6 (all lambdas ~0.5), plain ints (fastai v2's MixUp(1)) too
alphas = st.one_of(st.floats(-8, 6).map(lambda e: 10.**e), st.integers(1, 1000))
tails = st.lists(st.integers(1, 5), min_size=0, max_size=3).map(tuple)  # the shape after the batch dim
seeds = st.integers(0, 2**32-1)

def _gen(seed): return torch.Generator().manual_seed(seed)

@st.composite
def batches(draw, bs=bss, dtype=dtypes):
    "A float batch `(bs, *tail)` whose samples span many magnitudes (from 1e-3 to 1e4: fp16 stays finite)"
    bs,dt,tail,seed = draw(bs),draw(dtype),draw(tails),draw(seeds)
    g = _gen(seed)
    scale = 10**torch.empty(bs, *[1]*len(tail)).uniform_(-3, 4, generator=g)
    x = torch.randn(bs, *tail, generator=g, dtype=torch.float64)*scale
    if draw(st.booleans()): x[::3] = x[0].clone()  # equal samples: the mix must give them back exactly
    return x.to(dt), g

def _shuffle(bs, alpha, g): return sample_perm(bs, generator=g), sample_lam(bs, alpha, generator=g)

def _one_ulp_out(lo, hi):
    "`lo` and `hi` widened by one unit in the last place of their dtype"
    return (torch.nextafter(lo, torch.full_like(lo, -float('inf'))), torch.nextafter(hi, torch.full_like(hi, float('inf'))))

@SETTINGS
@given(bs=bss, alpha=alphas, seed=seeds)
def test_lambdas_folded_and_finite(bs, alpha, seed):
    lam = sample_lam(bs, alpha, generator=_gen(seed))
    assert lam.shape==(bs,) and lam.dtype==torch.float32
    assert torch.isfinite(lam).all() and (lam>=0.5).all() and (lam<=1).all(), lam

@SETTINGS
@given(bs=bss, seed=seeds)
def test_shuffle_is_a_permutation(bs, seed):
    perm = sample_perm(bs, generator=_gen(seed))
    assert perm.dtype==torch.int64 and perm.shape==(bs,)
    assert torch.equal(perm.sort().values, torch.arange(bs))

@SETTINGS
@given(b=batches(), alpha=alphas)
def test_mixed_input_between_its_sources(b, alpha):
    x,g = b; x0 = x.clone()
    perm,lam = _shuffle(len(x), alpha, g)
    m = mix(x, perm, lam)
    assert m.dtype==x.dtype and m.shape==x.shape and torch.isfinite(m).all()
    assert torch.equal(x, x0)  # the caller's batch is left alone
    lo,hi = torch.minimum(x, x[perm]),torch.maximum(x, x[perm])
    # The lerp rounds once in the dtype, so it may land one ulp outside [lo, hi], never more
    lo,hi = _one_ulp_out(lo, hi)
    assert ((m>=lo)&(m<=hi)).all(), (m, x, x[perm], lam)
    # Samples equal to their partner (and any lam) come back exactly
    same = (x==x[perm]).reshape(len(x), -1).all(1)
    assert torch.equal(m[same], x[same])

@SETTINGS
@given(b=batches(), seed=seeds)
def test_lam_one_gives_x_back_exactly(b, seed):
    x,_ = b; x0 = x.clone()
    m = mix(x, sample_perm(len(x), generator=_gen(seed)), torch.ones(len(x)))
    assert torch.equal(m, x0) and torch.equal(x, x0)
    assert m.data_ptr()!=x.data_ptr()  # a new tensor: writing to it cannot touch the batch

@SETTINGS
@given(bs=bss, dtype=st.sampled_from([torch.int64, torch.int32, torch.uint8, torch.bool]), seed=seeds)
def test_non_float_passes_through(bs, dtype, seed):
    x = torch.randint(0, 2, (bs, 3), generator=_gen(seed)).to(dtype)
    perm,lam = _shuffle(bs, 1., _gen(seed))
    assert mix(x, perm, lam) is x

@SETTINGS
@given(bs=bss, n=st.integers(2, 12), dtype=dtypes, alpha=alphas, seed=seeds)
def test_lerped_one_hot_sums_to_one(bs, n, dtype, alpha, seed):
    g = _gen(seed)
    y = F.one_hot(torch.randint(0, n, (bs,), generator=g), n).to(dtype)
    perm,lam = _shuffle(bs, alpha, g)
    m = mix(y, perm, lam)
    assert ((m>=0)&(m<=1)).all()
    # Two nonzero entries, each rounded once: their sum is off by at most one ulp of 1 (eps) in total
    err = (m.double().sum(1)-1).abs()
    assert (err<=torch.finfo(dtype).eps).all(), (err.max(), dtype)
    # ... and each row is the lerp of its two one-hots: lam (in the dtype) on its own class, the rest on its partner's
    c,cp = y.argmax(1),y[perm].argmax(1)
    own = m.gather(1, c[:,None]).squeeze(1).double()
    expect = torch.where(c==cp, 1., lam.to(dtype).double())
    assert ((own-expect).abs()<=torch.finfo(dtype).eps/2).all(), (own, expect)

def _targets(kind, bs, n, g):
    if kind=='class': return torch.randint(0, n, (bs,), generator=g)
    if kind=='multi': return torch.randint(0, 2, (bs, n), generator=g).float()
    return torch.randn(bs, n, generator=g)

LOSSES = [(CrossEntropyLossFlat, 'class'), (nn.CrossEntropyLoss, 'class'), (lambda: F.cross_entropy, 'class'),
          (lambda: nn.CrossEntropyLoss(label_smoothing=0.1), 'class'),
          (BCEWithLogitsLossFlat, 'multi'), (MSELossFlat, 'float'), (lambda: nn.MSELoss(reduction='sum'), 'float')]

@SETTINGS
@given(i=st.integers(0, len(LOSSES)-1), bs=bss, n=st.integers(2, 10), seed=seeds,
       dtype=st.sampled_from([torch.float32, torch.float64]), reduction=st.sampled_from([None, 'mean', 'sum', 'none']))
def test_lambdas_one_give_the_wrapped_loss(i, bs, n, seed, dtype, reduction):
    mk,kind = LOSSES[i]; crit = mk()
    g = _gen(seed)
    pred,y = torch.randn(bs, n, generator=g, dtype=dtype),_targets(kind, bs, n, g)
    if kind!='class': y = y.to(dtype)
    perm,ones = sample_perm(bs, generator=g),torch.ones(bs)
    red = reduction or loss_reduction(crit)
    expect = crit(pred, y, reduction=red) if not hasattr(crit, 'reduction') else None
    if expect is None:
        old = crit.reduction; crit.reduction = red
        expect = crit(pred, y); crit.reduction = old
    got = mixed_loss(crit, pred, (y,), perm, ones, reduction=reduction)
    # fastai's flat losses compute in float32 even for float64 predictions (the fused cross-entropy may not): compare
    # in the coarser of the two dtypes; a mean may sum in another order
    coarse = torch.float32 if torch.float32 in (got.dtype, expect.dtype) else torch.float64
    tol = dict(rtol=1e-6, atol=1e-7) if coarse==torch.float32 else dict(rtol=1e-12, atol=1e-14)
    assert got.dtype in (expect.dtype, torch.promote_types(expect.dtype, dtype))
    torch.testing.assert_close(got.to(coarse), expect.to(coarse), **tol)
    if reduction is None:  # the loss object a learner calls: armed with all-ones lambdas, then back to plain
        lf = MixUpLoss(crit).arm(perm, ones)
        torch.testing.assert_close(lf(pred, y).to(coarse), expect.to(coarse), **tol)
        assert lf.lam is None and loss_reduction(crit)==red

# One batch through the callback, as fastai runs it: the batch's tensors are never written to
class _Model(nn.Module):
    def forward(self, x): return x.flatten(1)

@SETTINGS
@given(b=batches(), alpha=alphas, stack_y=st.booleans())
def test_callback_batch_leaves_callers_tensors(b, alpha, stack_y):
    x,g = b; bs = len(x)
    y = F.one_hot(torch.randint(0, 3, (bs,), generator=g), 3).to(x.dtype)
    x0,y0 = x.clone(),y.clone()
    learn = Learner(None, _Model(), loss_func=MSELossFlat()).mixup(alpha=alpha, stack_y=stack_y)
    cb,own = learn.mix_up,learn.loss_func
    learn.xb,learn.yb,learn.pct_train = (x,),(y,),0.
    cb.before_train(); cb.before_batch()
    assert torch.equal(x, x0) and torch.equal(y, y0)
    if bs==1: assert learn.xb[0] is x and learn.yb[0] is y and cb.lam is None; return  # nothing to mix with
    m = learn.xb[0]
    lo,hi = _one_ulp_out(torch.minimum(x, x[cb.perm]), torch.maximum(x, x[cb.perm]))
    assert m.dtype==x.dtype and ((m>=lo)&(m<=hi)).all()
    if stack_y: assert learn.yb[0] is y
    else: assert ((learn.yb[0].double().sum(1)-1).abs()<=torch.finfo(x.dtype).eps).all()
    cb.after_batch()
    assert learn.loss_func is own
