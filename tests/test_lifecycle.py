"""The callback's lifecycle, with real fits: a batch's record and mixed loss never outlive the batch (whatever another
callback raises), the loss as it is now is the one wrapped and given back, one learner per callback, `until` and the
schedules in `fine_tune` and `lr_find`, training metrics with `stack_y=False`, and the lambdas low-precision inputs get."""
import math, pytest, torch, torch.nn as nn, torch.nn.functional as F
from fastai.callback.core import Callback, CancelTrainException, CancelEpochException, CancelFitException
from fastai.callback.schedule import SchedCos
from fastai.learner import Learner, Recorder
from fastai.losses import CrossEntropyLossFlat, LabelSmoothingCrossEntropyFlat, BCEWithLogitsLossFlat
from fastai.metrics import accuracy_multi
from fastai.torch_core import set_seed
from fastcore.basics import ifnone
import fastai.callback.progress  # adds `Learner.no_bar`
from mixup_cb.callback import MixUpCallback, mixing_cb
from mixup_cb.loss import mixed_loss
from mixup_cb.mix import mix
from mixup_cb.examples import digits_dls, small_cnn
from mixup_cb.test_utils import quiet_fit, MixRecorder

def small_learner(bs:int=64, model=None, **kw)->Learner:
    "The digits with a small validation set and a narrow CNN: a fit of a few batches takes about a second"
    return Learner(digits_dls(bs=bs, valid_pct=0.05), ifnone(model, small_cnn(nf=8)), **kw)

class Cap(Callback):
    "Ends training after `n` batches of each epoch from another callback's `after_batch`, as a step cap or time budget does"
    def __init__(self, n:int=3, exc=CancelTrainException): self.n,self.exc = n,exc
    def after_batch(self):
        if self.training and self.iter==self.n-1: raise self.exc()

class LossSpy(Callback):
    "Per training batch: whether the mixing callback's record was there after the loss, the loss, and the clean loss of the prediction"
    order = 150  # documented to run after mixing
    def before_fit(self): self.rows = []
    def before_batch(self):
        if self.training: self.rows.append(dict(seen_mixed=mixing_cb(self.learn).record is not None))
    def after_loss(self):
        if not self.training: return
        r = mixing_cb(self.learn).record
        self.rows[-1].update(mixed=r is not None, loss=self.loss.item(), lf=self.learn.loss_func,
                             plain=F.cross_entropy(self.pred, self.yb[0]).item())

def test_cancel_in_another_after_batch_leaves_nothing_behind():
    "A Cancel*Exception from another callback's after_batch: the next clean batch's loss is the plain loss"
    for exc in (CancelTrainException, CancelEpochException, CancelFitException):
        for seed in range(2):
            set_seed(seed)
            learn = small_learner().mixup(alpha=1., p=0.5)
            spy = LossSpy()
            quiet_fit(learn, 3, cbs=[Cap(3, exc), spy])
            clean = [r for r in spy.rows if not r['mixed']]
            assert clean and all(r['loss']==pytest.approx(r['plain'], rel=1e-5) for r in clean)
            assert all(r['seen_mixed']==r['mixed'] for r in spy.rows)  # order 150 saw every mixed batch mixed
            assert type(learn.loss_func) is CrossEntropyLossFlat and learn.mix_up.record is None

def test_issue_repro_until():
    "The issue's repro: until=0.5 with a cap; epoch 1's first batch is clean and its loss is the plain cross-entropy"
    set_seed(0)
    learn = small_learner().mixup(alpha=1., until=0.5)
    spy = LossSpy()
    quiet_fit(learn, 2, cbs=[Cap(3), spy])
    assert [r['mixed'] for r in spy.rows] == [True]*3 + [False]*3
    for r in spy.rows[3:]: assert r['loss'] == pytest.approx(r['plain'], rel=1e-5)

class SwitchLoss(Callback):
    "A loss curriculum: label smoothing from the 5th training batch on"
    order = 50
    def before_batch(self):
        if self.training and self.train_iter==5: self.learn.loss_func = self.new = LabelSmoothingCrossEntropyFlat()

class MixedLossCheck(Callback):
    "Per mixed training batch: the loss equals the mixed loss of the loss in place when the batch started"
    order = 150
    def before_fit(self): self.n,self.lfs = 0,[]
    def before_batch(self):
        if self.training: self.lf = self.learn.loss_func
    def after_loss(self):
        r = mixing_cb(self.learn).record
        if not self.training or r is None: return
        want = mixed_loss(self.lf, self.pred, self.yb, r.perm, r.lam)
        assert self.loss.item() == pytest.approx(want.item(), rel=1e-5)
        self.n += 1; self.lfs.append(type(self.lf).__name__)

def test_loss_switched_during_training_is_used_and_kept():
    set_seed(0)
    learn = small_learner().mixup()
    sw,chk = SwitchLoss(),MixedLossCheck()
    quiet_fit(learn, 1, cbs=[sw, chk, Cap(12)])
    assert learn.loss_func is sw.new
    assert chk.lfs[:5] == ['CrossEntropyLossFlat']*5 and set(chk.lfs[5:]) == {'LabelSmoothingCrossEntropyFlat'} and chk.n == 12

def test_one_callback_one_learner():
    cb = MixUpCallback()
    a = small_learner(cbs=cb)
    with pytest.raises(ValueError, match='one callback per learner'): small_learner(cbs=cb)
    assert cb.learn is a
    # through fit(cbs=...), one learner after another: each fit mixes every batch
    cb2 = MixUpCallback()
    for learn in (small_learner(), small_learner()):
        rec = MixRecorder()
        quiet_fit(learn, 1, cbs=[cb2, rec, Cap(5)])
        assert rec.was_mixed == [True]*5

def test_fine_tune_restarts_the_schedule_in_each_phase():
    "`until` and the schedules read each fit's pct_train: fine_tune's two phases each mix their first half"
    set_seed(0)
    learn = small_learner(bs=256).mixup(alpha=SchedCos(1., 0.), until=0.5)
    rec = MixRecorder(); learn.add_cb(rec)
    pcts = []
    class Phases(Callback):
        order = 101
        def after_fit(self): pcts.append(list(rec.pcts))
    with learn.no_bar(), learn.no_logging(): learn.fine_tune(1, 1e-3, freeze_epochs=1, cbs=Phases())
    assert len(pcts)==2 and min(pcts[1]) == 0.  # the second phase's pct_train starts again from 0
    for pct,mixed,alpha in zip(rec.pcts, rec.was_mixed, rec.alphas):
        assert mixed == (pct < 0.5)
        if mixed: assert alpha == pytest.approx(0.5*(1+math.cos(math.pi*pct)), abs=1e-6)

def test_lr_find_holds_the_schedules_at_their_start():
    set_seed(0)
    learn = small_learner().mixup(alpha=SchedCos(1., 0.), until=0.5)
    rec = MixRecorder(); learn.add_cb(rec)
    with learn.no_bar(), learn.no_logging(): learn.lr_find(num_it=30, show_plot=False)
    assert len(rec.was_mixed) >= 20 and all(rec.was_mixed) and set(rec.alphas) == {1.}
    assert type(learn.loss_func) is CrossEntropyLossFlat

class TargetsAtMetrics(Callback):
    "Just before the Recorder's after_batch: the targets training metrics will be computed on, and the batch's own"
    order = 40
    def before_fit(self): self.rows = []
    def before_batch(self):
        if self.training: self.own = self.yb[0].clone()
    def after_batch(self):
        if self.training: self.rows.append((self.yb[0].clone(), self.own))

def test_training_metrics_with_mixed_targets_score_the_own_targets():
    set_seed(0)
    learn = Learner(digits_dls(bs=64, valid_pct=0.05), small_cnn(nf=8), loss_func=BCEWithLogitsLossFlat(), metrics=accuracy_multi,
                    cbs=[Recorder(train_metrics=True)]).mixup(stack_y=False)
    class OneHot(Callback):
        order = 10
        def before_batch(self): self.learn.yb = (F.one_hot(self.yb[0], 10).float(),)
    spy = TargetsAtMetrics()
    quiet_fit(learn, 1, cbs=[OneHot(), spy, Cap(8)])
    assert len(spy.rows) >= 7 and all(torch.equal(a, b) for a,b in spy.rows)
    # and the training loss used the mixed targets (the loss is not the loss of the own targets)
    assert learn.mix_up.stack_y is False

class Bf16(Callback):
    "bfloat16 inputs and model, as a user training in bfloat16 has them"
    order = 10
    def before_batch(self): self.learn.xb = tuple(x.bfloat16() for x in self.xb)

class LamSpy(Callback):
    "Per mixed batch: the record's lambdas, the loss, and the mixed loss recomputed with those lambdas"
    order = 150
    def before_fit(self): self.rows = []
    def after_loss(self):
        r = mixing_cb(self.learn).record
        if self.training and r is not None:
            self.rows.append((r.lam.clone(), self.loss.float(), mixed_loss(self.learn.loss_func, self.pred, self.yb, r.perm, r.lam).float()))

def test_bf16_lambdas_are_the_ones_the_inputs_got():
    set_seed(0)
    learn = small_learner(model=small_cnn(nf=8).bfloat16(), loss_func=CrossEntropyLossFlat()).mixup(alpha=0.05)
    spy = LamSpy()
    quiet_fit(learn, 1, cbs=[Bf16(), spy, Cap(6)])
    lams = torch.cat([l for l,_,_ in spy.rows])
    assert all(torch.equal(got, want) for _,got,want in spy.rows)  # the loss was mixed with the rounded lambdas
    assert torch.equal(lams, lams.bfloat16().float())              # each representable in bfloat16
    assert (lams==1).any()                                          # alpha 0.05: many round to 1 and are not mixed at all
