"""One mix per batch, whatever is attached: of several mixing callbacks, only the last one attached mixes a fit, through
`Learner(cbs=...)`, `learn.add_cb(...)` and `learn.fit(cbs=...)`; real fits, every kind of mixing callback standing aside."""
import warnings, torch, torch.nn as nn, torch.nn.functional as F, pytest
from fastai.callback.core import Callback
from fastai.data.core import DataLoaders
from fastai.learner import Learner
import fastai.callback.progress  # adds `Learner.no_bar`
from fastai.losses import CrossEntropyLossFlat
from fastcore.basics import risinstance
from mixup_cb.callback import MixUpCallback
from mixup_cb.cutmix import CutMixCallback, MixUpOrCutMix
from mixup_cb.manifold import ManifoldMixUpCallback
from mixup_cb.callback import MixCallback, mixing_cb

def tiny_learner(cbs=None):
    "Random 1x4x4 images of 3 classes and a linear model: a fit takes a fraction of a second"
    g = torch.Generator().manual_seed(0)
    ds = list(zip(torch.randn(64, 1, 4, 4, generator=g), torch.randint(0, 3, (64,), generator=g)))
    dls = DataLoaders.from_dsets(ds[:48], ds[48:], bs=16)
    return Learner(dls, nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), loss_func=CrossEntropyLossFlat(), cbs=cbs)

class BatchSpy(Callback):
    "Per training batch: the clean batch, the model's input, the mixing callback's draws, the prediction and the loss"
    order = 50  # before the mixing callbacks in `before_batch`
    def before_fit(self): self.rows = []
    def before_batch(self):
        if self.training: self.rows.append(dict(x=self.xb[0].clone(), y=self.yb[0].clone()))
    def after_pred(self):
        if not self.training: return
        mixer = mixing_cb(self.learn)
        self.rows[-1].update(xm=self.learn.xb[0].clone(), perm=mixer.perm, lam=mixer.lam, mixer=mixer,
                             idle=[c.lam for c in self.learn.cbs if isinstance(c, MixCallback) and c is not mixer])
    def after_loss(self):
        if self.training: self.rows[-1].update(pred=self.pred.detach(), loss=self.loss.item())

def check_one_mix(spy, mixer):
    "Every batch of the fit was mixed once, by `mixer`, from two samples, and its loss is the mixed loss of that mix"
    assert len(spy.rows) == 3
    for r in spy.rows:
        assert r['mixer'] is mixer and all(l is None for l in r['idle'])
        assert (r['perm'] != torch.arange(16)).all()
        lam = r['lam'].view(-1, 1, 1, 1)
        torch.testing.assert_close(r['xm'], lam*r['x'] + (1-lam)*r['x'][r['perm']])
        own, other = (F.cross_entropy(r['pred'], y, reduction='none') for y in (r['y'], r['y'][r['perm']]))
        assert r['loss'] == pytest.approx(float((r['lam']*own + (1-r['lam'])*other).mean()), rel=1e-5)

class CheckNames(Callback):
    "During the fit, the learner's own mixing callback and the one passed to `fit` are both reachable as attributes"
    def __init__(self, own, mixer): self.own,self.mixer = own,mixer
    def before_fit(self): assert self.learn.mix_up is self.own and self.learn.mix_up_2 is self.mixer

def fit_warned(learn, **kw):
    "Fit one epoch quietly; the 'stand(s) aside' warnings it gave"
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('default')
        with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-2, **kw)
    return [str(w.message) for w in ws if 'aside' in str(w.message)]

OTHERS = [lambda: MixUpCallback(0.4), CutMixCallback, MixUpOrCutMix, ManifoldMixUpCallback]

@pytest.mark.parametrize('other', OTHERS, ids=['mixup', 'cutmix', 'mixup_or_cutmix', 'manifold'])
def test_learner_cbs_last_one_mixes(other):
    other, mixer, spy = other(), MixUpCallback(1.), BatchSpy()
    ws = fit_warned(tiny_learner(cbs=[other, mixer, spy]))
    check_one_mix(spy, mixer)
    assert len(ws) == 1 and repr(mixer) in ws[0] and f'{other!r} stands aside' in ws[0], ws

@pytest.mark.parametrize('other', OTHERS, ids=['mixup', 'cutmix', 'mixup_or_cutmix', 'manifold'])
def test_add_cb_last_one_mixes(other):
    mixer, spy = MixUpCallback(1.), BatchSpy()
    learn = tiny_learner(cbs=[other(), spy]); learn.add_cb(mixer)
    assert len(fit_warned(learn)) == 1
    check_one_mix(spy, mixer)

def test_fit_cbs_mixes_that_fit_only():
    "The README's example: the callback passed to `fit` mixes that fit; the learner's own one stays and mixes the next"
    own, spy = MixUpCallback(0.4), BatchSpy()
    learn = tiny_learner(cbs=[own, spy])
    for _ in range(2):  # said once per fit, every fit
        mixer = MixUpCallback(1., stack_y=True)
        ws = fit_warned(learn, cbs=[mixer, CheckNames(own, mixer)])
        check_one_mix(spy, mixer)
        assert len(ws) == 1 and 'MixUpCallback(alpha=0.4) stands aside' in ws[0], ws
        assert list(learn.cbs.filter(risinstance(MixCallback))) == [own] and learn.mix_up is own
    assert fit_warned(learn) == []
    check_one_mix(spy, own)
    assert type(learn.loss_func) is CrossEntropyLossFlat

def test_mixup_replaces_so_no_warning():
    "`learn.mixup()` and friends replace: one mixing callback, no warning"
    spy = BatchSpy()
    learn = tiny_learner(cbs=spy).cutmix().mixup(alpha=1.)
    assert fit_warned(learn) == []
    check_one_mix(spy, learn.mix_up)
