"""MixUp on real fastai learners: the parametrised and heavier cases of nbs/guides/learners.ipynb.
Every check compares with a definition written out by hand: the lerp, or the per-sample weighted loss."""
import tempfile, pytest, torch, numpy as np, pandas as pd
import torch.nn as nn, torch.nn.functional as F
import fastcore.test as fct
from functools import partial
from pathlib import Path
from fastai.vision.all import (vision_learner, unet_learner, resnet18, ImageDataLoaders, SegmentationDataLoaders, DataBlock,
                               ImageBlock, MultiCategoryBlock, parent_label, get_image_files, PILImage, PILMask, TensorImage,
                               TensorMask, TensorMultiCategory, Categorize)
from fastai.tabular.all import TabularDataLoaders, Categorify, Normalize, CategoryBlock, TabularModel, TabularLearner, get_emb_sz
from fastai.callback.progress import ProgressCallback
from fastai.basics import (Learner, Callback, CastToTensor, Datasets, CrossEntropyLossFlat, BCEWithLogitsLossFlat,
                           L1LossFlat, LabelSmoothingCrossEntropyFlat, FocalLossFlat, accuracy, load_learner, risinstance,
                           ifnone, set_seed, Module, Tensor)
from mixup_cb.all import *
from mixup_cb.examples import ItemAt

# ---- helpers: fire, loss_of, quiet_fit and make_split_images are shared with the notebooks (mixup_cb.test_utils) ----
from mixup_cb.test_utils import make_seg_images, make_tabular_df, fire, loss_of, quiet_fit, make_split_images

def lerped(x, perm, lam):
    "`lam[i]*x[i] + (1-lam[i])*x[perm[i]]`, sample by sample, computed in float64"
    x = x.double()
    return torch.stack([lam[i].double()*x[i] + (1-lam[i].double())*x[perm[i]] for i in range(len(x))])

def weighted(lam, own, shuf):
    "Per-sample (or per-element) losses weighted by their sample's lambda, averaged"
    lam = lam.view(-1, *[1]*(own.ndim-1)).to(own.dtype)
    return (lam*own + (1-lam)*shuf).mean()

def tensor_dls(xs, ys, n_valid=16, bs=16):
    def pipe(o): return [ItemAt(*o)] if isinstance(o, tuple) else [ItemAt(o)]
    n = len(pipe(ys[0])[0].items)
    dsets = Datasets(range(n), [pipe(o) for o in (*xs, *ys)], n_inp=len(xs),
                     splits=(list(range(n-n_valid)), list(range(n-n_valid, n))))
    return dsets.dataloaders(bs=bs, num_workers=0)

class Spy(Callback):
    "Record `xb`, `yb` and the mixing callback's `perm`, `lam` at `before_batch`, at this `order`"
    def __init__(self, order): self.order,self.seen = order,[]
    def before_batch(self):
        mu = self.learn.mix_up
        self.seen.append((self.training, [x.clone() for x in self.xb], [y.clone() for y in self.yb],
                          None if mu.perm is None else mu.perm.clone(), None if mu.lam is None else mu.lam.clone(),
                          [type(x) for x in self.xb], [type(y) for y in self.yb],
                          [x.is_contiguous(memory_format=torch.channels_last) for x in self.xb if x.ndim==4]))

G = torch.Generator().manual_seed(0)
X4 = torch.randn(64, 4, generator=G)
Y_CLS = (X4[:,0]+X4[:,1]>0).long()

# ---- every classification loss with stack_y=False, against its formula ----
# (stack_y=True, the default, is nbs/guides/learners.ipynb's loop over the same losses and hand formulas)
def logp(p): return F.log_softmax(p.float(), -1)
def ce_hand(p, y): return -logp(p).gather(1, y[:,None])[:,0]
def smooth_hand(p, y, eps=0.1): return (1-eps)*ce_hand(p, y) - eps*logp(p).mean(-1)
def focal_hand(p, y, gamma=2.): return (1-(-ce_hand(p, y)).exp())**gamma * ce_hand(p, y)
LOSSES = {'CrossEntropyLossFlat': (CrossEntropyLossFlat, ce_hand), 'nn.CrossEntropyLoss': (nn.CrossEntropyLoss, ce_hand),
          'F.cross_entropy': (lambda: F.cross_entropy, ce_hand),
          'LabelSmoothingCrossEntropyFlat': (LabelSmoothingCrossEntropyFlat, smooth_hand),
          'FocalLossFlat': (partial(FocalLossFlat, gamma=2.), focal_hand)}

@pytest.mark.parametrize('name', list(LOSSES))
def test_classification_losses_stack_y_false(name):
    mk,hand = LOSSES[name]
    lf = mk()
    dls = tensor_dls([X4], [Y_CLS])
    learn = Learner(dls, nn.Linear(4,2), loss_func=lf).mixup(alpha=1., stack_y=False)
    x,y = b = dls.one_batch()
    cb = fire(learn, b)
    fct.test_close(learn.xb[0], lerped(x, cb.perm, cb.lam).float(), eps=1e-6)
    fct.test_eq(learn.yb[0], y); fct.test_eq(cb.record.mixes_loss, True)   # class indices are never lerped, whatever stack_y says
    loss = loss_of(learn)
    fct.test_close(loss, weighted(cb.lam, hand(learn.pred, y), hand(learn.pred, y[cb.perm])), eps=1e-5)
    fct.test_is(learn.loss_func, lf)
    quiet_fit(learn, 1, 1e-2)
    fct.test_is(learn.loss_func, lf)
    assert np.isfinite(learn.recorder.values[-1][0])

# ---- regression: both modes, L1 (MSE is nbs/guides/learners.ipynb's) ----
def test_regression_both_modes_l1():
    lf,hand = L1LossFlat, lambda p,t: (p-t).abs()
    y = X4 @ torch.tensor([[1.],[-2.],[0.5],[0.]])
    dls = tensor_dls([X4], [y])
    b = dls.one_batch()
    sd = nn.Linear(4,1).state_dict()
    out = {}
    for stack_y in (True, False):
        learn = Learner(dls, nn.Linear(4,1), loss_func=lf()).mixup(stack_y=stack_y)
        learn.model.load_state_dict(sd); torch.manual_seed(3)
        cb = fire(learn, b)
        out[stack_y] = learn, cb, loss_of(learn)
    (l1,cb1,mixed_losses),(l2,cb2,mixed_targets) = out[True],out[False]
    fct.test_eq(cb1.perm, cb2.perm); fct.test_eq(cb1.lam, cb2.lam)
    t = b[1]
    fct.test_eq(l1.yb[0], t)
    fct.test_close(l2.yb[0], lerped(t, cb2.perm, cb2.lam).float(), eps=1e-6); fct.test_eq(cb2.record.mixes_loss, False)
    fct.test_close(mixed_losses, weighted(cb1.lam, hand(l1.pred, t), hand(l1.pred, t[cb1.perm])), eps=1e-5)
    fct.test_close(mixed_targets, hand(l2.pred, l2.yb[0]).mean(), eps=1e-5)
    quiet_fit(l2, 3, 5e-2)
    assert l2.recorder.values[-1][0] < l2.recorder.values[0][0]

# ---- dtypes: float16, bfloat16, float64 inputs and models ----
@pytest.mark.parametrize('dt', [torch.float16, torch.bfloat16, torch.float64], ids=str)
def test_dtypes(dt):
    tol = {torch.float16: 2e-3, torch.bfloat16: 2e-2, torch.float64: 1e-12}[dt]
    dls = tensor_dls([X4.to(dt)], [Y_CLS])
    learn = Learner(dls, nn.Linear(4,2).to(dt), loss_func=CrossEntropyLossFlat()).mixup(alpha=1.)
    x,y = b = dls.one_batch()
    fct.test_eq(x.dtype, dt)
    cb = fire(learn, b)
    xm = learn.xb[0]
    fct.test_eq(xm.dtype, dt); fct.test_eq(cb.lam.dtype, torch.float32)
    assert ((cb.lam>=0.5) & (cb.lam<=1)).all()
    fct.test_close(xm.double(), lerped(x, cb.perm, cb.lam), eps=tol)
    loss = loss_of(learn)
    assert loss.dtype in (torch.float32, torch.float64)   # the lerp of the losses is done in at least float32
    fct.test_close(loss, weighted(cb.lam, ce_hand(learn.pred, y), ce_hand(learn.pred, y[cb.perm])), eps=1e-5 if dt==torch.float64 else tol*5)
    quiet_fit(learn, 1, 1e-2)
    fct.test_eq(next(learn.model.parameters()).dtype, dt)
    assert np.isfinite(learn.recorder.values[-1][0])

# ---- integer alpha ----
@pytest.mark.parametrize('alpha', [1, 2])
def test_integer_alpha(alpha):
    learn = Learner(tensor_dls([X4], [Y_CLS]), nn.Linear(4,2), loss_func=CrossEntropyLossFlat()).mixup(alpha=alpha)
    fct.test_eq(learn.mix_up.alpha, float(alpha)); fct.test_eq(type(learn.mix_up.alpha), float)
    spy = Spy(101)
    quiet_fit(learn.add_cb(spy))
    lams = [s[4] for s in spy.seen if s[0]]
    assert lams and all(l is not None and (l>=0.5).all() for l in lams)

# ---- a loss that cannot give per-sample values ----
class Batches(Callback):
    def before_fit(self): self.n = 0
    def before_batch(self): self.n += 1

def mean_only(p, y): return F.cross_entropy(p, y)

def test_loss_without_per_sample_values():
    learn = Learner(tensor_dls([X4], [Y_CLS]), nn.Linear(4,2), loss_func=mean_only, cbs=Batches()).mixup()
    with learn.no_bar(), learn.no_logging():
        with pytest.raises(TypeError) as e: learn.fit(1)
    msg = str(e.value)
    assert "reduction='none'" in msg and 'stack_y=False' in msg and 'mean_only' in msg, msg
    fct.test_eq(learn.batches.n, 0); fct.test_is(learn.loss_func, mean_only)
    # (the fix the message names, stack_y=False for float targets, trains in nbs/guides/reliability.ipynb)

class IgnoresReduction(nn.Module):
    "Claims a `reduction` but always averages"
    reduction = 'mean'
    def forward(self, p, y): return F.cross_entropy(p, y)

def test_loss_ignoring_reduction():
    lf = IgnoresReduction()
    learn = Learner(tensor_dls([X4], [Y_CLS]), nn.Linear(4,2), loss_func=lf).mixup()
    with learn.no_bar(), learn.no_logging():
        with pytest.raises(ValueError, match="reduction='none' is honoured"): learn.fit(1)
    fct.test_is(learn.loss_func, lf)

# ---- vision: a whole resnet18 trained with MixUp; the fit path checked batch by batch ----
@pytest.fixture(scope='module')
def img_path():
    with tempfile.TemporaryDirectory() as d: yield make_split_images(Path(d))

class ToChannelsLast(Callback):
    order = 50
    def before_batch(self): self.learn.xb = tuple(x.contiguous(memory_format=torch.channels_last) for x in self.xb)

def test_vision_fit_path(img_path):
    "During a real `fit`: every training batch mixed as defined, types and channels-last kept; validation untouched"
    set_seed(0)
    dls = ImageDataLoaders.from_folder(img_path, bs=8, num_workers=0)
    learn = vision_learner(dls, resnet18, pretrained=False, metrics=accuracy).mixup(alpha=1.)
    learn.remove_cbs(learn.cbs.filter(risinstance(CastToTensor)))
    learn.model.to(memory_format=torch.channels_last)
    before,after = Spy(99),Spy(101)
    lf = learn.loss_func
    quiet_fit(learn.add_cbs([ToChannelsLast(), before, after]), 1, 1e-3)
    fct.test_is(learn.loss_func, lf)
    train = [(b,a) for b,a in zip(before.seen, after.seen) if a[0]]
    valid = [(b,a) for b,a in zip(before.seen, after.seen) if not a[0]]
    fct.test_eq(len(train), 2); assert valid
    for b,a in train:
        perm,lam = a[3],a[4]
        fct.test_close(a[1][0].double(), lerped(b[1][0], perm, lam), eps=1e-5)
        fct.test_eq(a[2][0], b[2][0])
        fct.test_eq(a[5], [TensorImage]); fct.test_eq(a[6][0].__name__, 'TensorCategory'); fct.test_eq(a[7], [True])
    for b,a in valid:
        fct.test_eq(a[1][0], b[1][0]); fct.test_eq(a[4], None)
    preds,targs,dec = learn.get_preds(with_decoded=True)
    fct.test_eq(dec, preds.argmax(1))

def test_multilabel_vision(img_path):
    "`MultiCategoryBlock` targets: `TensorMultiCategory` kept and lerped with stack_y=False, losses mixed with stack_y=True"
    def labels(p): return [parent_label(p)] + (['odd'] if int(p.stem)%2 else [])
    dblock = DataBlock(blocks=(ImageBlock, MultiCategoryBlock), get_items=get_image_files, get_y=labels,
                       splitter=lambda items: ([i for i,o in enumerate(items) if o.parent.parent.name=='train'],
                                               [i for i,o in enumerate(items) if o.parent.parent.name=='valid']))
    dls = dblock.dataloaders(img_path, bs=8, num_workers=0)
    x,y = b = dls.one_batch()
    fct.test_eq(type(y), TensorMultiCategory); assert y.is_floating_point()
    learn = vision_learner(dls, resnet18, pretrained=False, train_bn=False).mixup(stack_y=False)
    cb = fire(learn, b, keep_types=True)
    fct.test_eq(type(learn.yb[0]), TensorMultiCategory); fct.test_eq(cb.record.mixes_loss, False)
    fct.test_close(learn.yb[0].double(), lerped(y, cb.perm, cb.lam), eps=1e-6)
    learn = vision_learner(dls, resnet18, pretrained=False, train_bn=False).mixup(stack_y=True)
    cb = fire(learn, b)
    fct.test_eq(learn.yb[0], y)
    loss = loss_of(learn)
    bce = lambda t: F.binary_cross_entropy_with_logits(learn.pred, t, reduction='none')
    yp = y.as_subclass(Tensor)
    fct.test_close(loss, weighted(cb.lam, bce(yp), bce(yp[cb.perm])), eps=1e-5)
    learn.freeze(); quiet_fit(learn)
    preds,targs,dec = learn.get_preds(with_decoded=True)
    fct.test_eq(dec, preds>0.5)

# ---- segmentation with a unet ----
@pytest.fixture(scope='module')
def seg_path():
    with tempfile.TemporaryDirectory() as d: yield make_seg_images(Path(d), n=24, seed=1)

def test_unet_segmentation(seg_path):
    dls = SegmentationDataLoaders.from_label_func(seg_path, get_image_files(seg_path/'img'), lambda o: seg_path/'lbl'/o.name,
                                                  codes=['bg','a','b'], bs=8, num_workers=0, seed=0)
    learn = unet_learner(dls, resnet18, pretrained=False, n_out=3).mixup()
    fct.test_eq(type(learn.loss_func), CrossEntropyLossFlat); fct.test_eq(learn.loss_func.axis, 1)
    x,y = b = dls.one_batch()
    cb = fire(learn, b, keep_types=True)
    fct.test_eq(type(learn.yb[0]), TensorMask); fct.test_is(learn.yb[0], y)
    fct.test_close(learn.xb[0].double(), lerped(x, cb.perm, cb.lam), eps=1e-5)
    loss = loss_of(learn)
    pred,yp = learn.pred.as_subclass(Tensor),y.as_subclass(Tensor).long()
    pix = lambda t: F.cross_entropy(pred, t, reduction='none')   # (bs, H, W): every pixel weighted by its sample's lambda
    fct.test_close(loss, weighted(cb.lam, pix(yp), pix(yp[cb.perm])), eps=1e-5)
    learn.freeze(); quiet_fit(learn)
    preds,targs,dec = learn.get_preds(with_decoded=True)
    fct.test_eq(preds.shape, (len(dls.valid_ds),3,32,32)); fct.test_eq(dec, preds.argmax(1))
    import matplotlib.pyplot as plt
    learn.show_results(max_n=2, shuffle=False)
    fct.test_eq(len(plt.gcf().axes), 4); plt.close('all')

# ---- tabular: stack_x=True with a model that mixes its embeddings; export and get_preds ----
class EmbMixTabular(TabularModel):
    "fastai's `TabularModel`, which in training gets `(cats, conts, cats[perm], conts[perm], lam)` and mixes the embeddings"
    def forward(self, x_cat, x_cont, *shuf):
        if not shuf: return super().forward(x_cat, x_cont)
        c2,k2,lam = shuf
        emb = lambda c: torch.cat([e(c[:,i]) for i,e in enumerate(self.embeds)], 1)
        w = lam[:,None]
        x = torch.cat([self.emb_drop(emb(c2).lerp(emb(x_cat), w)), self.bn_cont(k2.lerp(x_cont, w))], 1)
        return self.layers(x)

def test_tabular_stack_x_and_export():
    df = make_tabular_df()
    dls = TabularDataLoaders.from_df(df, procs=[Categorify, Normalize], cat_names=['color','size'], cont_names=['a','b'],
                                     y_names='y', y_block=CategoryBlock(), valid_idx=list(range(64,96)), bs=16, num_workers=0)
    model = EmbMixTabular(get_emb_sz(dls.train_ds), 2, 2, [16])
    learn = TabularLearner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=accuracy).mixup(stack_x=True)
    spy = Spy(101)
    quiet_fit(learn.add_cb(spy), 2, 1e-2)
    learn.remove_cb(spy)
    fct.test_eq([len(o[1]) for o in spy.seen], [5 if o[0] else 2 for o in spy.seen])
    for training,xb,yb,perm,lam,*_ in spy.seen:
        if not training: continue
        fct.test_eq(xb[2], xb[0][perm]); fct.test_eq(xb[3], xb[1][perm]); fct.test_eq(xb[4], lam)
        fct.test_eq(xb[0].dtype, torch.int64)
    assert np.isfinite(learn.recorder.values[-1]).all()
    # get_preds, predict and export + load_learner as without MixUp
    with learn.no_bar(): p_with = learn.get_preds(with_decoded=True)
    row = df.iloc[70]
    pr_with = learn.predict(row)
    with tempfile.TemporaryDirectory() as d:
        learn.export(Path(d)/'tab.pkl'); l2 = load_learner(Path(d)/'tab.pkl')
    learn.remove_cb(learn.mix_up)
    with learn.no_bar(): p_without = learn.get_preds(with_decoded=True)
    for a,b in zip(p_with, p_without): fct.test_eq(a, b)
    fct.test_eq(learn.predict(row)[2], pr_with[2]); fct.test_close(l2.predict(row)[2], pr_with[2], eps=1e-6)
    fct.test_eq(type(l2.loss_func), CrossEntropyLossFlat); fct.test_eq(l2.mix_up.lam, None)

# ---- any device: lambdas and shuffles on the inputs' device; mixed precision on a GPU ----
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
@pytest.mark.parametrize('dt', [torch.float16, torch.bfloat16, torch.float32], ids=str)
def test_cuda(dt):
    dev = torch.device('cuda')
    dls = tensor_dls([X4.to(dt)], [Y_CLS])
    dls.to(dev)
    learn = Learner(dls, nn.Linear(4,2).to(dev), loss_func=CrossEntropyLossFlat()).mixup(alpha=1.)
    if dt==torch.float16: learn.model.half()
    if dt==torch.bfloat16: learn.model.bfloat16()
    x,y = b = dls.one_batch()
    fct.test_eq(x.device.type, 'cuda')
    cb = fire(learn, b)
    fct.test_eq(cb.lam.device.type, 'cuda'); fct.test_eq(cb.perm.device.type, 'cuda')
    fct.test_eq(learn.xb[0].dtype, dt)
    fct.test_close(learn.xb[0].double().cpu(), lerped(x.cpu(), cb.perm.cpu(), cb.lam.cpu()), eps=2e-2)
    loss = loss_of(learn)
    fct.test_close(loss.cpu(), weighted(cb.lam, ce_hand(learn.pred, y), ce_hand(learn.pred, y[cb.perm])).cpu(), eps=2e-2)
    quiet_fit(learn, 1, 1e-2)
    assert np.isfinite(learn.recorder.values[-1][0])

@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_cuda_vision_fp16(img_path):
    dls = ImageDataLoaders.from_folder(img_path, bs=8, num_workers=0, device='cuda')
    learn = vision_learner(dls, resnet18, pretrained=False).to_fp16().mixup()
    spy = Spy(101)
    quiet_fit(learn.add_cb(spy), 2, 1e-3)
    lams = [s[4] for s in spy.seen if s[0]]
    assert lams and all(l.device.type=='cuda' for l in lams)
    assert np.isfinite(learn.recorder.values[-1][0])
