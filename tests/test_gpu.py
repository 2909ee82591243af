"""Checks that need a CUDA device: they skip where there is none (CI has none; run them on a GPU machine with
`python -m pytest -q tests/test_gpu.py`). Lambdas and shuffles are made on the inputs' device, nothing in the batch
path waits on the device, and fastai's real CUDA mixed precision trains with MixUp."""
import pytest, torch, torch.nn.functional as F
from fastai.basics import Learner, accuracy, CrossEntropyLossFlat
import fastai.callback.progress, fastai.callback.fp16, fastai.callback.schedule  # no_bar, to_fp16, fit_one_cycle
from mixup_cb.all import *
from mixup_cb.examples import digits_dls, small_cnn

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')

def test_draws_and_mix_on_device():
    x = torch.randn(64, 3, 32, 32, device='cuda')
    perm, lam = sample_perm(64, x.device), sample_lam(64, 0.4, x.device)
    assert perm.is_cuda and lam.is_cuda and lam.dtype==torch.float32
    xm = mix(x, perm, lam)
    ref = lam.cpu()[:,None,None,None]*x.cpu() + (1-lam.cpu()[:,None,None,None])*x.cpu()[perm.cpu()]
    torch.testing.assert_close(xm.cpu(), ref, rtol=1e-5, atol=1e-5)
    for dt in (torch.float16, torch.bfloat16): assert mix(x.to(dt), perm, lam).dtype==dt

def _mixed_batch(learn):
    learn.epoch,learn.training,learn.n_epoch,learn.dl = 0,True,1,learn.dls.train
    learn._split(learn.dls.one_batch()); learn('before_fit'); learn('before_train')
    return learn.cbs.filter(lambda c: isinstance(c, MixCallback))[0]

def test_batch_path_never_waits_on_device():
    learn = Learner(digits_dls(bs=64, device='cuda'), small_cnn().cuda()).mixup()
    cb = _mixed_batch(learn)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')  # any host-device synchronisation now raises
    try:
        cb('before_batch')
        learn.pred = learn.model(*learn.xb)
        cb('after_pred')
        loss = learn.loss_func(learn.pred, *learn.yb)
    finally: torch.cuda.set_sync_debug_mode(0)
    assert cb.lam is not None and cb.lam.is_cuda and loss.is_cuda
    assert type(learn.loss_func) is CrossEntropyLossFlat
    cb('after_batch')

def test_fit_fp16_on_cuda():
    learn = Learner(digits_dls(bs=64, device='cuda'), small_cnn(), metrics=accuracy).mixup().to_fp16()
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(3, 1e-2)
    assert learn.recorder.values[-1][2] > 0.85
    assert type(learn.loss_func) is CrossEntropyLossFlat

def test_mixed_ce_and_mix_under_deterministic_algorithms():
    "torch.use_deterministic_algorithms(True): the mixed CE and the mix run on CUDA, repeatably, and the CE is its definition"
    torch.manual_seed(0)
    pred = torch.randn(256, 10, device='cuda', requires_grad=True)
    y = torch.randint(0, 10, (256,), device='cuda'); y[:7] = -100  # some ignored targets too
    perm, lam = sample_perm(256, 'cuda'), sample_lam(256, 0.4, 'cuda')
    x = torch.randn(256, 3, 8, 8, device='cuda')
    torch.use_deterministic_algorithms(True)
    try:
        out = []
        for _ in range(2):
            l = mixed_loss(torch.nn.CrossEntropyLoss(), pred, (y,), perm, lam); l.backward()
            out.append((l.detach(), pred.grad.clone(), mix(x, perm, lam))); pred.grad = None
    finally: torch.use_deterministic_algorithms(False)
    (l0,g0,m0),(l1,g1,m1) = out
    assert torch.equal(l0, l1) and torch.equal(g0, g1) and torch.equal(m0, m1)
    ce, kept = (lambda t: F.cross_entropy(pred, t, reduction='none')), (lambda t: (t!=-100).float())
    want = (lam*ce(y) + (1-lam)*ce(y[perm])).sum()/(lam*kept(y) + (1-lam)*kept(y[perm])).sum()  # ignored targets weigh 0
    torch.testing.assert_close(l0, want.detach())
