"Plain pytest tests of the core API, beside the notebooks' own."
import pickle, pytest, torch, torch.nn as nn, torch.nn.functional as F
from fastcore.test import test_close as close
from fastai.basics import Learner, CrossEntropyLossFlat, Callback, accuracy, set_seed
import fastai.callback.progress  # Learner.no_bar
from mixup_cb.all import *
from mixup_cb.examples import digits_dls, small_cnn

def test_worked_example():
    pred = torch.tensor([[.8,.2],[.7,.3],[.4,.6],[.6,.4]])
    y, perm, lam = torch.tensor([0,0,1,1]), torch.tensor([0,3,2,1]), torch.full((4,), 0.3)
    l = mixup_loss(CrossEntropyLossFlat(), pred, (y,), perm, lam, reduction='none')
    close(l, torch.tensor([0.4375, 0.7930, 0.5981, 0.6581]), eps=1e-4)
    soft = torch.lerp(F.one_hot(y[perm], 2).float(), F.one_hot(y, 2).float(), lam[:,None])
    close(l, F.cross_entropy(pred, soft, reduction='none'), eps=1e-6)

@pytest.mark.parametrize('alpha', [0.1, 0.4, 1, 3.0])
def test_lambdas_folded_and_seeded(alpha):
    set_seed(7); a = sample_lam(512, alpha)
    set_seed(7); b = sample_lam(512, alpha)
    assert torch.equal(a, b) and a.shape==(512,) and ((a>=0.5)&(a<=1)).all()

def test_mix_is_lerp_and_leaves_input():
    x = torch.randn(9, 4); x0 = x.clone(); perm, lam = sample_perm(9), sample_lam(9, 1.)
    close(mix(x, perm, lam), lam[:,None]*x + (1-lam[:,None])*x[perm], eps=1e-6)
    assert torch.equal(x, x0)

class _RaiseAt(Callback):
    "Raise `exc` from `event` on the 2nd training batch"
    def __init__(self, event, exc): self.event,self.exc,self.n = event,exc,0
    def __call__(self, name):
        if name==self.event and getattr(self, 'training', False):
            self.n += 1
            if self.n==2: raise self.exc('stop')
        return super().__call__(name)

@pytest.mark.parametrize('event', ['before_batch', 'after_pred', 'after_loss', 'after_step'])
@pytest.mark.parametrize('exc', [RuntimeError, KeyboardInterrupt])
def test_loss_restored_after_exception(event, exc, tmp_path):
    learn = Learner(digits_dls(bs=64), small_cnn(), path=tmp_path).mixup()
    orig = learn.loss_func
    with learn.no_logging(), learn.no_bar():
        with pytest.raises(exc): learn.fit(1, cbs=_RaiseAt(event, exc))
        assert learn.loss_func is orig
        learn.fit(1)  # and a second fit works
    assert learn.loss_func is orig and learn.mix_up.lam is None

def test_callback_for_one_fit_restores(tmp_path):
    learn = Learner(digits_dls(bs=64), small_cnn(), path=tmp_path); orig = learn.loss_func
    with learn.no_logging(), learn.no_bar():
        with pytest.raises(RuntimeError): learn.fit(1, cbs=[MixUpCallback(), _RaiseAt('after_loss', RuntimeError)])
    assert learn.loss_func is orig and not any(isinstance(c, MixCallback) for c in learn.cbs)

def test_mixup_replaces_and_returns_learner():
    learn = Learner(digits_dls(bs=64), small_cnn())
    assert learn.mixup() is learn
    learn.mixup(alpha=2).mixup(alpha=0.2)
    cbs = [c for c in learn.cbs if isinstance(c, MixCallback)]
    assert len(cbs)==1 and cbs[0].alpha==0.2

def test_mixuploss_pickles_without_batch():
    lf = MixUpLoss(nn.CrossEntropyLoss()).arm(torch.arange(4), torch.ones(4))
    lf2 = pickle.loads(pickle.dumps(lf))
    assert lf2.lam is None and isinstance(lf2.crit, nn.CrossEntropyLoss)
