"""A `torch.compile`d model trains with MixUp: the mixing stays outside the graphs, and the callback causes no recompiles.

Backend 'aot_eager': dynamo + AOT autograd (forward and backward graphs), no C++ build. Measured on 2 busy CPUs, one
epoch of the digits: eager 3.5 s, aot_eager 12.6 s, inductor 119.5 s (its C++ compiles), so inductor is left out."""
import pytest, torch, torch._dynamo
from torch._dynamo.backends.registry import lookup_backend
from fastai.basics import Learner, Callback
import fastai.callback.progress  # Learner.no_bar
from mixup_cb.all import *
from mixup_cb.examples import digits_dls, small_cnn

pytestmark = pytest.mark.skipif(not hasattr(torch, 'compile'), reason='needs torch.compile')

class Counting:
    "A dynamo backend that records each graph it is asked to compile, then compiles it with `backend`"
    def __init__(self, backend='aot_eager'): self.backend,self.graphs,self.bss = lookup_backend(backend),[],[]
    def __call__(self, gm, example_inputs):
        self.graphs.append(gm)
        self.bss.append(next(t.shape[0] for t in example_inputs if isinstance(t, torch.Tensor) and t.shape[1:]==(1,8,8)))
        return self.backend(gm, example_inputs)
    @property
    def n(self): return len(self.graphs)

def scored_with(learn)->str:
    "After a training batch's loss: 'MixUpLoss' if it equals the mixed loss of the recorded draws, else the loss's type"
    mu = getattr(learn, 'mix_up', None)
    if mu is None or mu.lam is None: return type(learn.loss_func).__name__
    want = mixed_loss(learn.loss_func, learn.pred, learn.yb, mu.perm, mu.lam)
    return 'MixUpLoss' if torch.allclose(learn.loss.float(), want.float(), rtol=1e-4, atol=1e-6) else 'other'

class LossSeen(Callback):
    "What each training batch was scored with (MixUp swaps the loss in only for the loss call itself)"
    order = 110  # after MixUp
    def __init__(self): self.lfs = []
    def after_loss(self):
        if self.training: self.lfs.append(scored_with(self.learn))

def _learner(cnt, mixup=True):
    torch._dynamo.reset()
    # drop_last=False: a ragged last training batch (1438 = 11*128 + 30) as well as a ragged validation one (359 = 2*128 + 103)
    dls = digits_dls(bs=128, device='cpu', num_workers=0, drop_last=False)
    torch.manual_seed(0)
    learn = Learner(dls, torch.compile(small_cnn(), backend=cnt, dynamic=False), cbs=LossSeen())
    return learn.mixup(alpha=1.) if mixup else learn

def _fit(learn, n=1):
    with learn.no_logging(), learn.no_bar(): learn.fit(n, 1e-2)

MIXING_OPS = ('lerp', 'randperm', 'gamma', 'beta')

def test_compiled_model_trains_with_mixup():
    cnt = Counting()
    learn = _learner(cnt); orig = learn.loss_func
    _fit(learn)
    # One graph per batch shape and mode, none from the callback: train 128 and 30 (ragged), eval 128 and 103 (ragged)
    assert sorted(cnt.bss)==[30, 103, 128, 128], cnt.bss
    _fit(learn)
    assert cnt.n==4, cnt.bss  # later epochs reuse them: mixed batches have the clean batches' shape and dtype
    assert set(learn.loss_seen.lfs)=={'MixUpLoss'} and learn.loss_func is orig
    for gm in cnt.graphs:  # the shuffle, the lambdas and the lerp run in the callback, not in the model's graph
        assert not [n.target for n in gm.graph.nodes if any(o in str(n.target).lower() for o in MIXING_OPS)]
    assert learn.recorder.values[-1][1] < 1.0  # it learned (chance is ln 10 = 2.3)
    # Without the callback the same graphs serve: clean and mixed batches look alike to dynamo's guards
    learn.remove_cb(learn.mix_up); learn.loss_seen.lfs = []
    _fit(learn)
    assert cnt.n==4 and set(learn.loss_seen.lfs)=={'CrossEntropyLossFlat'}
