"""MixUp where the inputs are integers, on real fastai learners: a text classifier (AWD-LSTM, built from scratch) and a
user's small transformer, collaborative filtering (`EmbeddingDotBias`, `EmbeddingNN`), a tabular model's embeddings;
Manifold MixUp over real fits; CutMix and MixUp on a `unet_learner` with a void class. Each mixed forward pass is checked
against a clean one, and against the definition written out by hand. The quick versions are in nbs/guides/learners.ipynb."""
import copy, tempfile, warnings, pytest, torch, numpy as np, pandas as pd
import torch.nn as nn, torch.nn.functional as F
import fastcore.test as fct
from pathlib import Path
from fastai.text.all import (text_classifier_learner, AWD_LSTM, awd_lstm_clas_config, TextBlock, BaseTokenizer)
from fastai.collab import CollabDataLoaders, collab_learner
from fastai.tabular.all import TabularDataLoaders, Categorify, Normalize, tabular_learner
from fastai.vision.all import unet_learner, resnet18, SegmentationDataLoaders, get_image_files
from fastai.basics import (Learner, Callback, DataBlock, CategoryBlock, ColReader, RandomSplitter, Datasets,
                           CrossEntropyLossFlat, accuracy, set_seed)
import fastai.callback.progress  # adds `Learner.no_bar`
from mixup_cb.all import *
from mixup_cb.callback import mixing_cb
from mixup_cb.hooks import HookMix, InputOf, find_mix_points
from mixup_cb.examples import ItemAt
from mixup_cb.test_utils import make_seg_images, make_tabular_df, make_text_df, disjoint_batch, only_in, TinyTransformer, fire, loss_of, quiet_fit

@pytest.fixture(scope='module', autouse=True)
def one_thread():
    # These models are tiny: on 2 shared CPUs one thread runs them several times faster than two fighting over cores
    old = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)

def lerped(x, perm, lam):
    "`lam[i]*x[i] + (1-lam[i])*x[perm[i]]`, sample by sample, in float64"
    x,lam = x.double(),lam.double()
    return torch.stack([lam[i]*x[i] + (1-lam[i])*x[perm[i]] for i in range(len(x))])

def mse_mixed(pred, y, perm, lam):
    "MixUp's loss for regression, by its definition: `lam*(p-y)^2 + (1-lam)*(p-y[perm])^2` per sample, averaged"
    p,y = pred.double().view(-1),y.double().view(-1)
    return (lam.double()*(p-y)**2 + (1-lam.double())*(p-y[perm])**2).mean()

def ce_mixed(pred, y, perm, lam):
    "MixUp's loss for classes: cross-entropy against both targets, weighted per sample, averaged"
    pred,y = pred.as_subclass(torch.Tensor).double(),y.as_subclass(torch.Tensor).view(-1).long()
    ce = lambda t: F.cross_entropy(pred, t, reduction='none')
    return (lam.double()*ce(y) + (1-lam.double())*ce(y[perm])).mean()

def no_hooks(model): return all(not (m._forward_hooks or m._forward_pre_hooks) for m in model.modules())

def same_buffers(model):
    "A context that puts the model's buffers (batch norm's running statistics) back: a check's extra forward pass changes no state"
    class _Ctx:
        def __enter__(self): self.bufs = [b.clone() for b in model.buffers()]
        def __exit__(self, *a):
            for b,o in zip(model.buffers(), self.bufs): b.copy_(o)
    return _Ctx()

# ---------------------------------------------------------------- text ----
@pytest.fixture(scope='module')
def text_dls():
    blk = DataBlock(blocks=(TextBlock.from_df('text', tok=BaseTokenizer(), n_workers=0, min_freq=1), CategoryBlock),
                    get_x=ColReader('text'), get_y=ColReader('label'), splitter=RandomSplitter(0.25, seed=0))
    return blk.dataloaders(make_text_df(), bs=32, num_workers=0)

# drop_mult must not be 0: fastai's WeightDropout then sets the LSTM's weight to its own raw Parameter (torch's dropout with
# p=0 returns its input), which registers it, and the next batch fails with "cannot assign 'torch.FloatTensor' as parameter"
AWD_CFG = {**awd_lstm_clas_config, 'emb_sz':16, 'n_hid':32, 'n_layers':1}
def awd_learner(dls, **kw):
    return text_classifier_learner(dls, AWD_LSTM, pretrained=False, config=AWD_CFG.copy(), drop_mult=0.1, metrics=accuracy, **kw)

def tt_learner(dls):
    return Learner(dls, TinyTransformer(len(dls.vocab[0]), pad=1), loss_func=CrossEntropyLossFlat(), metrics=accuracy)

def check_text_mixing(learn, emb_weight, head):
    """On one batch: the head receives the lerp of the clean pooled vectors; the prediction differs from the clean one;
    a sample's prediction sends gradient to its partner's words and to no third sentence's; the loss is MixUp's"""
    b = disjoint_batch(learn.dls)
    ids,y = b
    cb = fire(learn, b)
    fct.test_eq(learn.xb[0], ids)                                   # token ids are never interpolated
    assert len(cb.record.points)==1 and isinstance(cb.record.points[0], InputOf) and cb.record.points[0].module is head
    learn.model.eval()   # no dropout, batch norm on running statistics: each row depends on its own sentence only
    seen = {}
    def grab(k):
        def f(m, a): seen.setdefault(k, a[0].detach().clone())   # (returns None: the input goes on unchanged)
        return head.register_forward_pre_hook(f)
    h = grab('mixed')    # registered after the callback's hook: it sees what the head receives
    out = learn.model(*learn.xb)
    h.remove()
    learn.pred = out; learn('after_pred')
    assert no_hooks(learn.model)
    pred = learn.pred
    h = grab('clean')
    with torch.no_grad(): clean = learn.model(ids)
    h.remove()
    clean = clean[0] if isinstance(clean, tuple) else clean
    fct.test_close(seen['mixed'], lerped(seen['clean'], cb.perm, cb.lam).float(), eps=1e-5)   # senMixup: the pooled vectors lerped
    with torch.no_grad(): fct.test_close(pred, head(seen['mixed']), eps=1e-6)
    assert (pred-clean).abs().max() > 1e-4, (pred, clean)
    # sample i is mixed with j = perm[i]: the gradient of its prediction reaches j's words, and not a third sentence's
    i = 0; j = cb.perm[i].item(); k = next(r for r in range(4) if r not in (i, j))
    pred[i].sum().backward(retain_graph=True)
    g = emb_weight.grad.abs().sum(1)
    assert g[only_in(ids, i)].min() > 0 and g[only_in(ids, j)].min() > 0, g
    fct.test_eq(g[only_in(ids, k)].max().item(), 0.)
    loss = learn.loss_func(pred, *learn.yb)
    fct.test_close(loss, ce_mixed(pred, y, cb.perm, cb.lam), eps=1e-5)
    fct.test_eq(type(learn.loss_func), CrossEntropyLossFlat)
    learn.model.train()

def test_text_awd_lstm_mixes_pooled_vector(text_dls):
    set_seed(0)
    learn = awd_learner(text_dls).mixup()
    check_text_mixing(learn, learn.model[0].module.encoder.weight, learn.model[1].layers)

def test_text_user_transformer_found(text_dls):
    set_seed(0)
    learn = tt_learner(text_dls).mixup()
    fct.test_eq(find_mix_points(learn.model), [InputOf(learn.model.head, flat=True)])
    check_text_mixing(learn, learn.model.emb.weight, learn.model.head)

def fit_text(learn, n=6, lr=1e-2):
    lf = learn.loss_func
    quiet_fit(learn, n, lr)
    assert learn.loss_func is lf and no_hooks(learn.model)
    return learn.recorder.values[-1]

@pytest.mark.parametrize('arch', ['awd_lstm', 'transformer'])
def test_text_fit_above_chance(text_dls, arch):
    "One fit each, with and without MixUp: the held-out accuracy (chance is 0.5)"
    res = {}
    for mixup in (False, True):
        set_seed(0)
        learn = awd_learner(text_dls) if arch=='awd_lstm' else tt_learner(text_dls)
        if mixup: learn.mixup()
        res[mixup] = fit_text(learn, 6, 1e-2)
    print(f"\n{arch}: valid loss, accuracy without MixUp {res[False][1:]}, with MixUp {res[True][1:]}")
    assert res[True][2] > 0.9 and res[False][2] > 0.9, res

# ---------------------------------------------------------------- collab ----
def make_ratings(n_users=40, n_items=30, n=1200, k=3, seed=0):
    "Ratings from 3 hidden factors per user and item, plus noise"
    g = np.random.default_rng(seed)
    U,I = g.normal(size=(n_users,k)), g.normal(size=(n_items,k))
    u,i = g.integers(0, n_users, n), g.integers(0, n_items, n)
    return pd.DataFrame(dict(user=u, item=i, rating=((U[u]*I[i]).sum(1) + 0.1*g.normal(size=n)).astype('float32')))

@pytest.fixture(scope='module')
def collab_dls():
    return CollabDataLoaders.from_df(make_ratings(), user_name='user', item_name='item', rating_name='rating',
                                     valid_pct=0.2, seed=0, bs=64, num_workers=0)

def collab_by_hand(m, x, perm, lam):
    "The model run on the lerped embeddings of both partners, from its weights"
    u,i = x[:,0],x[:,1]
    if hasattr(m, 'u_weight'):   # EmbeddingDotBias: users, items and both biases lerped with the same lambdas
        U,I = lerped(m.u_weight.weight[u], perm, lam), lerped(m.i_weight.weight[i], perm, lam)
        bu,bi = lerped(m.u_bias.weight[u], perm, lam), lerped(m.i_bias.weight[i], perm, lam)
        return ((U*I).sum(1) + bu[:,0] + bi[:,0]).float()
    embs = [lerped(e.weight[x[:,k]], perm, lam).float() for k,e in enumerate(m.embeds)]   # EmbeddingNN
    return m.layers(torch.cat(embs, 1))[:,0]

@pytest.mark.parametrize('use_nn', [False, True], ids=['EmbeddingDotBias', 'EmbeddingNN'])
def test_collab_definition(collab_dls, use_nn):
    set_seed(0)
    learn = collab_learner(collab_dls, n_factors=8, use_nn=use_nn, layers=[16] if use_nn else None).mixup()
    lf = learn.loss_func
    (x,y) = b = collab_dls.one_batch()
    cb = fire(learn, b)
    fct.test_eq(learn.xb[0], x); fct.test_eq(learn.yb[0], y)
    loss = loss_of(learn)
    pred,m = learn.pred.view(-1),learn.model
    with torch.no_grad(), same_buffers(m):
        fct.test_close(pred, collab_by_hand(m, x, cb.perm, cb.lam), eps=1e-5)   # (batch norm: train mode, same batch)
        clean = m(x).view(-1)
    assert (pred-clean).abs().max() > 1e-3
    fct.test_close(loss, mse_mixed(pred, y, cb.perm, cb.lam), eps=1e-5)
    assert learn.loss_func is lf and no_hooks(m)

def test_collab_fit(collab_dls):
    "One fit each, with and without MixUp, for both models: the training loss falls, the loss comes back"
    res = {}
    for use_nn in (False, True):
        for mixup in (False, True):
            set_seed(0)
            learn = collab_learner(collab_dls, n_factors=8, use_nn=use_nn, layers=[16] if use_nn else None)
            if mixup: learn.mixup()
            lf = learn.loss_func
            quiet_fit(learn, 6, 2e-2)
            v = np.array(learn.recorder.values)
            assert v[-1,0] < v[0,0] and v[-1,1] < v[0,1], v
            assert learn.loss_func is lf and no_hooks(learn.model)
            res[use_nn,mixup] = v[-1,1]
    print('\ncollab valid MSE (use_nn, mixup):', {k: round(float(o), 3) for k,o in res.items()})

# ---------------------------------------------------------------- tabular ----
@pytest.fixture(scope='module')
def tab_dls():
    return TabularDataLoaders.from_df(make_tabular_df(), procs=[Categorify, Normalize], cat_names=['color','size'], cont_names=['a','b'],
                                      y_names='y', y_block=CategoryBlock(), valid_idx=list(range(64,96)), bs=16, num_workers=0)

def test_tabular_mix_embeds(tab_dls):
    set_seed(0)
    learn = tabular_learner(tab_dls, layers=[16], metrics=accuracy).mixup(mix_embeds=True)
    lf,m = learn.loss_func,learn.model
    cats,conts,y = b = tab_dls.one_batch()
    raw,got = {},{}
    def keep(d, k):
        def f(mod, a, o): d.setdefault(k, o.detach().clone())   # (returns None: the output goes on unchanged)
        return f
    hs = [e.register_forward_hook(keep(raw, k)) for k,e in enumerate(m.embeds)]   # before the callback's: the clean outputs
    cb = fire(learn, b)
    hs += [e.register_forward_hook(keep(got, k)) for k,e in enumerate(m.embeds)]  # after it: what the model goes on with
    fct.test_eq(cb.record.points, tuple(m.embeds))
    fct.test_eq(learn.xb[0], cats)                                            # the codes themselves are untouched
    fct.test_close(learn.xb[1], lerped(conts, cb.perm, cb.lam).float(), eps=1e-6)   # the continuous columns, as always
    loss = loss_of(learn)
    for h in hs: h.remove()
    for k in range(len(m.embeds)): fct.test_close(got[k], lerped(raw[k], cb.perm, cb.lam).float(), eps=1e-6)
    with torch.no_grad(), same_buffers(m):
        hand = m.layers(torch.cat([*(got[k] for k in range(len(m.embeds))), m.bn_cont(learn.xb[1])], 1))
        fct.test_close(learn.pred, hand, eps=1e-5)
        clean = m(cats, conts)
    assert (learn.pred-clean).abs().max() > 1e-4
    fct.test_close(loss, ce_mixed(learn.pred, y, cb.perm, cb.lam), eps=1e-5)
    # the default: codes follow the dominant sample, nothing is mixed inside the model
    cb = fire(tabular_learner(tab_dls, layers=[16]).mixup(), b)
    fct.test_eq(cb.record.points, ()); fct.test_eq(cb.learn.xb[0], cats)
    quiet_fit(learn, 2, 1e-2)
    assert learn.loss_func is lf and no_hooks(m) and np.isfinite(learn.recorder.values[-1]).all()

# ---------------------------------------------------------------- Manifold MixUp on real learners ----
def twin(model, points):
    "A copy of `model`, and `points` as the same places in the copy"
    mc = copy.deepcopy(model)
    to = {id(a): b for a,b in zip(model.modules(), mc.modules())}
    return mc,[InputOf(to[id(p.module)]) if isinstance(p, InputOf) else to[id(p)] for p in points]

class KeepXb(Callback):
    "The batch as the loader gave it, before any mixing"
    order = 0
    def before_batch(self): self.xb0 = tuple(x.clone() for x in self.learn.xb)

class MixedForward(Callback):
    """After the loss, per training batch: whether the loss is the mixed loss of the record's draws, and whether the forward pass
    was mixed: the input mixed, or the prediction equal to the model re-run with the record's point mixed and unequal to a clean run"""
    order = 150
    def before_fit(self): self.rows = []
    def after_loss(self):
        if not self.training: return
        r,m = mixing_cb(self.learn).record,self.learn.model
        mixed = r is not None and torch.allclose(self.loss, mixed_loss(self.learn.loss_func, self.pred, self.yb, r.perm, r.lam), atol=1e-6)
        row = dict(mixed_loss=mixed, points=None if r is None else r.points)
        if r is not None and not r.points:   # the input was chosen
            x0 = self.learn.keep_xb.xb0
            row['mixed_forward'] = all(torch.allclose(a, lerped(b, r.perm, r.lam).to(b.dtype), atol=1e-6) for a,b in zip(self.xb, x0)
                                       if b.is_floating_point()) and not all(torch.equal(a, b) for a,b in zip(self.xb, x0))
        elif r is not None:
            # On a copy of the model (the learner's backward needs batch norm's running statistics as they are), in the same
            # mode as training: batch norm on the batch's statistics; these models have no dropout
            mc,pts = twin(m, r.points)
            with torch.no_grad():
                clean = mc(*self.xb)
                HookMix(mc, pts, r.perm, r.lam); again = mc(*self.xb)
            row['mixed_forward'] = torch.allclose(self.pred, again, atol=1e-5) and (self.pred-clean).abs().max().item() > 1e-5
        self.rows.append(row)

def check_every_mixed_loss_mixed(learn, n_epoch):
    learn.add_cbs([KeepXb(), spy := MixedForward()])
    lf = learn.loss_func
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        quiet_fit(learn, n_epoch, 1e-2)
    ws = [str(w.message) for w in ws if 'Manifold' in str(w.message)]
    fct.test_eq(ws, [])                                                        # no module was dropped
    rows = spy.rows
    assert rows and all(r['mixed_loss'] for r in rows), rows                   # every batch mixed (p=1)
    assert all(r['mixed_forward'] for r in rows), [r for r in rows if not r['mixed_forward']]
    names = {id(o): n for n,o in learn.model.named_modules()}
    name = lambda p: f'InputOf({names[id(p.module)]})' if isinstance(p, InputOf) else names[id(p)]
    picks = {'input' if not r['points'] else name(r['points'][0]) for r in rows}
    assert learn.loss_func is lf and no_hooks(learn.model)
    return picks

def test_manifold_tabular(tab_dls):
    set_seed(0)
    learn = tabular_learner(tab_dls, layers=[16, 16], metrics=accuracy).manifold_mixup()
    picks = check_every_mixed_loss_mixed(learn, 4)
    assert len(picks) >= 3, picks    # the input, the input of the layers, and their hidden layers all drawn

class Blocks(nn.Module):
    "A model that loops over `self.blocks`, an `nn.ModuleList` whose own forward never runs"
    def __init__(self, n_in=4, d=16, n=3):
        super().__init__()
        self.stem = nn.Linear(n_in, d)
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(d, d), nn.BatchNorm1d(d), nn.ReLU()) for _ in range(n)])
        self.head = nn.Linear(d, 2)
    def forward(self, x):
        x = self.stem(x)
        for b in self.blocks: x = x + b(x)
        return self.head(x)

def test_manifold_module_list():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(160, 4, generator=g); y = (x[:,0]*x[:,1] > 0).long()
    dsets = Datasets(range(160), [[ItemAt(x)], [ItemAt(y)]], n_inp=1, splits=(list(range(128)), list(range(128,160))))
    set_seed(0)
    learn = Learner(dsets.dataloaders(bs=16, num_workers=0), Blocks(), loss_func=CrossEntropyLossFlat()).manifold_mixup()
    picks = check_every_mixed_loss_mixed(learn, 3)
    assert len(picks) >= 4, picks

def test_manifold_integer_inputs(text_dls):
    "Text: the input leaves Manifold's choices with one warning; with nothing else to choose, an error before the first step"
    set_seed(0)
    learn = awd_learner(text_dls).manifold_mixup()
    lf = learn.loss_func
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        quiet_fit(learn, 2, 1e-2)
    ws = [str(w.message) for w in ws if 'ManifoldMixUpCallback' in str(w.message)]
    fct.test_eq(len(ws), 1); assert 'no input can be interpolated' in ws[0], ws
    assert None not in learn.manifold_mix_up.choices and learn.loss_func is lf
    assert np.isfinite(learn.recorder.values[-1]).all()
    learn = awd_learner(text_dls).manifold_mixup(modules=[])
    w0 = [p.detach().clone() for p in learn.model.parameters()]
    with warnings.catch_warnings(), learn.no_bar(), learn.no_logging():
        warnings.simplefilter('ignore')
        with pytest.raises(ValueError, match='nothing is left to mix') as e: learn.fit(1)
    assert 'modules=' in str(e.value), e.value
    assert all(torch.equal(a, b) for a,b in zip(w0, learn.model.parameters()))   # not one step was taken
    assert learn.loss_func is lf

# ---------------------------------------------------------------- unet: CutMix on masks, MixUp with a void class ----
@pytest.fixture(scope='module')
def seg_dls():
    with tempfile.TemporaryDirectory() as d:
        p = make_seg_images(Path(d), n=16, void=True, seed=2)
        yield SegmentationDataLoaders.from_label_func(p, get_image_files(p/'img'), lambda o: p/'lbl'/o.name, codes=['bg','a','b'],
                                                      bs=4, num_workers=0, seed=0)

def seg_learner(dls):
    return unet_learner(dls, resnet18, pretrained=False, n_out=3, loss_func=CrossEntropyLossFlat(axis=1, ignore_index=255))

def test_unet_cutmix_pixel_targets(seg_dls):
    "The gradient at zero logits: each non-void pixel trains 100% towards the class of the image it came from"
    set_seed(0)
    learn = seg_learner(seg_dls).cutmix()
    lf = learn.loss_func
    x,y = b = seg_dls.one_batch()
    cb = fire(learn, b, keep_types=True)
    r = cb.record
    assert r.mask is not None and r.mask.any() and not r.mask.all()
    src = torch.where(r.mask, y[r.perm], y).as_subclass(torch.Tensor).long()   # the class of the image each pixel came from
    assert ((src!=y.as_subclass(torch.Tensor)) & (src!=255)).any()            # the boxes moved some labelled pixels
    learn.pred = torch.zeros(len(y), 3, 32, 32, requires_grad=True)
    learn('after_pred')
    loss = learn.loss_func(learn.pred, *learn.yb)
    loss.backward()
    g = learn.pred.grad.permute(0,2,3,1)                                      # (bs, H, W, C)
    keep = src!=255
    # for cross-entropy at zero logits the gradient is (1/C - target)*w per pixel: w is read from a class the target lacks
    w = g.max(-1).values*3
    t = 1/3 - g/w[...,None].clamp_min(1e-30)
    fct.test_close(t[keep], F.one_hot(src[keep], 3).float(), eps=1e-5)
    fct.test_close(w[keep], torch.full_like(w[keep], 1/keep.sum().item()), eps=1e-9)   # every non-void pixel weighs the same
    fct.test_eq(g[~keep].abs().max().item(), 0.)                                       # void pixels train towards nothing
    assert learn.loss_func is lf
    learn.freeze()
    quiet_fit(learn, 1, 1e-3)
    assert learn.loss_func is lf and np.isfinite(learn.recorder.values[-1][0])

class UnmixedLoss(Callback):
    "Per training batch the mixing callback left clean: the training loss, and the learner's own loss on the same prediction"
    order = 150
    def before_fit(self): self.rows = []
    def after_loss(self):
        if self.training and mixing_cb(self.learn).record is None:
            self.rows.append((self.loss.item(), self.learn.loss_func(self.pred, *self.yb).item()))

def test_unet_mixup_void(seg_dls):
    "MixUp with a void class: the loss comes back, and a batch trained without mixing has the learner's own loss"
    set_seed(1)
    learn = seg_learner(seg_dls).mixup(p=0.5)
    lf = learn.loss_func
    learn.freeze()
    spy = UnmixedLoss()
    quiet_fit(learn, 2, 1e-3, cbs=spy)
    assert learn.loss_func is lf and np.isfinite(learn.recorder.values[-1]).all()
    assert spy.rows, 'no batch was left clean'
    for got,own in spy.rows: assert got == pytest.approx(own, rel=1e-6)
    # and a mixed loss armed with lam = 1 is the learner's own loss, void pixels and all
    x,y = seg_dls.one_batch()
    with torch.no_grad(): pred = learn.model(x)
    fct.test_close(MixUpLoss(lf).arm(torch.randperm(len(y)), torch.ones(len(y)))(pred, y), lf(pred, y), eps=1e-6)
