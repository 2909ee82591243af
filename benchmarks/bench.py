"""What MixUp costs per batch: mixup_cb against fastai v2, timm, torchvision, a naive version and the floors, in one run.

    python benchmarks/bench.py                  # CPU, full run (about 2 minutes on 2 idle CPUs)
    python benchmarks/bench.py --quick          # fewer repeats, for a quick look
    python benchmarks/bench.py --device cuda    # on a GPU (times with torch.cuda.synchronize around each call)
    python benchmarks/bench.py --contention 2   # with 2 busy processes beside it, as DataLoader workers would be
    python benchmarks/bench.py --only paths step  # only some groups: mixing, paths, loss, step
    python benchmarks/bench.py --busy 0 1 2     # issue 17: each CPU op of the batch path idle, then beside 1 and 2 busy loops

Prints a markdown table and writes it to benchmarks/results-<device>[-contended][-quick][-only-<groups>].md.Every implementation of a row group runs on
the same tensors, interleaved repeat by repeat in a new shuffled order each round (so a busy machine slows all of them
alike, and none always runs right after the same one: on these CPUs the call after a plain cross-entropy ran up to
100 us slower); the table gives the median of the repeats with min and max, and ratios of medians from the same run.
timm and torchvision come from the `bench` extra (`pip install -e ".[bench]"`); a peer that is missing or fails is
reported as such.
"""
from __future__ import annotations
import argparse, os, platform, random, signal, statistics, subprocess, sys, time, warnings
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
warnings.filterwarnings('ignore')
import torch, torch.nn as nn, torch.nn.functional as F
from torch import Tensor
from fastai.basics import Learner, DataLoaders, CrossEntropyLossFlat, L, Callback
from fastai.data.load import DataLoader
from fastai.torch_core import TensorImage, TensorCategory
from fastai.callback.mixup import MixUp
from fastai.callback.progress import ProgressCallback
import mixup_cb
from mixup_cb.core import sample_lam, sample_perm
from mixup_cb.mix import mix, mix_inputs, Recycler, RECYCLE_BYTES, sample_boxes, box_mask, paste, cutmix_inputs
from mixup_cb.loss import mixed_loss
from mixup_cb.callback import MixUpCallback
from mixup_cb.cutmix import CutMixCallback
from mixup_cb.manifold import ManifoldMixUpCallback
from mixup_cb.hooks import mix_output
try: from timm.data import Mixup as TimmMixup
except ImportError: TimmMixup = None
try: from torchvision.transforms import v2 as tv2
except ImportError: tv2 = None

ALPHA = 0.4

# ---- timing -------------------------------------------------------------------------------------------------------
def _sync(dev):
    if dev.type=='cuda': torch.cuda.synchronize(dev)

def run_group(fns:dict, reps:int, dev, warmup:int=2)->dict:
    "Time each `fns[name]()` `reps` times, interleaved in a shuffled order; {name: [seconds]} or {name: 'error text'}"
    res = {}
    for k,f in fns.items():  # warm up, and drop the ones that fail
        try:
            for _ in range(warmup): f()
            _sync(dev); res[k] = []
        except Exception as e: res[k] = f'fails: {type(e).__name__}: {str(e).splitlines()[0][:60]}'
    live = [k for k in fns if isinstance(res[k], list)]
    rng = random.Random(0)
    for _ in range(reps):
        rng.shuffle(live)  # a new order every round: no implementation always runs right after the same one
        for k in live:
            _sync(dev); t = time.perf_counter(); fns[k](); _sync(dev)
            res[k].append(time.perf_counter()-t)
    return res

def table(title:str, res:dict, floor:str|None, ours:str, unit:str='ms', scale:float=1e3)->list[str]:
    "Markdown rows: median, min, max, and the median as a multiple of `floor` and of `ours`"
    med = {k: statistics.median(v) for k,v in res.items() if isinstance(v, list)}
    out = [f'\n#### {title}\n', f'| implementation | median {unit} | min | max | x {floor or "-"} | x mixup_cb |',
           '|---|---:|---:|---:|---:|---:|']
    for k,v in res.items():
        if not isinstance(v, list): out.append(f'| {k} | {v} | | | | |'); continue
        fl = f'{med[k]/med[floor]:.2f}' if floor in med else ''
        ou = f'{med[k]/med[ours]:.2f}' if ours in med else ''
        out.append(f'| {k} | {med[k]*scale:.3f} | {min(v)*scale:.3f} | {max(v)*scale:.3f} | {fl} | {ou} |')
    return out

# ---- busy processes beside the benchmark ----------------------------------------------------------------------------
# Each is a fresh interpreter (not a fork of this one, whose OpenMP pool a fork would break) that runs until it is
# stopped, or until this process is gone: it checks its parent every few ms, so none outlives a killed benchmark.
_HOG = r'''
import os, sys, time
ppid, kind = os.getppid(), sys.argv[1]
try:
    import torch  # torch's own thread count, as a process that never sets it (fastai's workers set 1; this is worse)
    a, b = torch.randn(256, 256), torch.randn(256, 256)/16
    print('ready', flush=True)
    while os.getppid()==ppid:
        if kind=='matmul':
            for _ in range(10): a = torch.mm(a, b).tanh_()
        else:
            t = time.perf_counter()
            while time.perf_counter()-t<0.01: pass
except KeyboardInterrupt: pass
'''

class Contention:
    "`n` busy background processes for the length of a `with` block, stopped at its end, on an error or a Ctrl-C too"
    def __init__(self, n:int, kind:str='matmul'): self.n,self.kind,self.procs,self.cpu_s = n,kind,[],None
    def __enter__(self):
        try:
            for _ in range(self.n):
                self.procs.append(subprocess.Popen([sys.executable, '-c', _HOG, self.kind], stdin=subprocess.DEVNULL,
                                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            for p in self.procs:  # every one busy before the first timing
                if p.stdout.readline().strip()!='ready': raise RuntimeError(f'a busy process failed to start: {p.stderr.read()[-500:]}')
        except BaseException:
            self.stop(); raise
        self.t0 = time.perf_counter()
        return self
    def _cpu(self, p)->float:
        "CPU seconds (user+system) the process has used so far, from /proc; nan where there is none"
        try: f = open(f'/proc/{p.pid}/stat').read().rsplit(')', 1)[1].split(); return (int(f[11])+int(f[12]))/os.sysconf('SC_CLK_TCK')
        except Exception: return float('nan')
    def stop(self):
        if self.procs and self.cpu_s is None:
            self.cpu_s, self.wall_s = sum(self._cpu(p) for p in self.procs), time.perf_counter()-getattr(self, 't0', time.perf_counter())
        for p in self.procs:
            if p.poll() is None: p.terminate()
        for p in self.procs:
            try: p.wait(5)
            except subprocess.TimeoutExpired: p.kill(); p.wait()
            for f in (p.stdout, p.stderr): f.close()
        self.procs = []
    def __exit__(self, *exc): self.stop()
    def describe(self)->str:
        if not self.n: return 'none (idle-ish: whatever else the machine runs; see the load average)'
        return (f'{self.n} busy background process(es) for the whole run, each a torch '
                f'{"256x256 matmul loop" if self.kind=="matmul" else "pure-Python spin loop"} at torch\'s default threads')

# ---- a Learner to drive the callbacks through, as `fit` would --------------------------------------------------------
def _learner(cb, model=None, dev=None):
    dl = DataLoader(list(range(8)), bs=4)
    learn = Learner(DataLoaders(dl, dl, device=dev), model or nn.Linear(1, 1), loss_func=CrossEntropyLossFlat(), cbs=cb)
    if ProgressCallback in map(type, learn.cbs): learn.remove_cb(ProgressCallback)
    return learn

def _start_training(learn, n_iter=10**6):
    learn.create_opt()
    learn.epoch,learn.n_epoch,learn.training,learn.n_iter,learn.iter = 0,1,True,n_iter,0
    learn.dl = learn.dls.train
    learn('before_fit'); learn('before_epoch'); learn('before_train')
    return learn

def _fire_before_batch(learn, b):
    learn._split(b); learn('before_batch')
    return learn.xb[0]

# ---- the peers' mixing, as each is used ---------------------------------------------------------------------------
def naive_mix(x, y):
    bs = x.shape[0]
    lam = torch.distributions.Beta(torch.tensor(ALPHA, device=x.device), torch.tensor(ALPHA, device=x.device)).sample((bs,))
    lam = torch.maximum(lam, 1-lam)
    perm = torch.randperm(bs, device=x.device)
    w = lam.to(x.dtype).view(-1, *[1]*(x.ndim-1))
    return w*x + (1-w)*x[perm], perm, lam

def ours_functions(rc, x):
    "mixup_cb without a Learner: draws, shuffle and mix into recycled memory"
    bs = x.shape[0]
    perm, lam = sample_perm(bs, x.device), sample_lam(bs, ALPHA, x.device)
    return mix(x, perm, lam, out=rc.empty_like(x))

def mixing_group(shape, dtype, dev, reps, ncls=10):
    x = torch.randn(shape, device=dev).to(dtype)
    y = torch.randint(0, ncls, (shape[0],), device=dev)
    b = (TensorImage(x), TensorCategory(y))
    out = torch.empty_like(x)
    fa = _start_training(_learner(MixUp(ALPHA), dev=dev))
    us = _start_training(_learner(MixUpCallback(ALPHA), dev=dev))
    no = _start_training(_learner([], dev=dev))
    rc = Recycler()
    fns = {'copy floor: out.copy_(x)': lambda: out.copy_(x),
           'dispatch floor: Learner event, no mixing': lambda: _fire_before_batch(no, b),
           'mixup_cb (Learner event)': lambda: _fire_before_batch(us, b),
           'mixup_cb (functions)': lambda: ours_functions(rc, x),
           'fastai v2 MixUp (Learner event)': lambda: _fire_before_batch(fa, b)}
    if TimmMixup is not None:
        for mode in ('batch', 'elem'):
            tm = TimmMixup(mixup_alpha=ALPHA, cutmix_alpha=0., prob=1., mode=mode, label_smoothing=0., num_classes=ncls)
            xt = x.clone()  # timm mixes in place: it gets its own copy, mixed over and over
            fns[f'timm Mixup mode={mode} (in place)'] = partial(tm, xt, y)
    else: fns['timm Mixup'] = None
    if tv2 is not None:
        tv = tv2.MixUp(alpha=ALPHA, num_classes=ncls)
        fns['torchvision v2 MixUp (one lam per batch)'] = lambda: tv(x, y)
    fns['naive lam*x+(1-lam)*x[perm]'] = lambda: naive_mix(x, y)
    fns = {k:(v if v is not None else _missing) for k,v in fns.items()}
    return run_group(fns, reps, dev)

def _missing(): raise ImportError('not installed (pip install -e ".[bench]")')

# ---- the CPU speed paths of `mix`: the index_copy_ gather, and recycled memory (`Recycler`) above RECYCLE_BYTES -------
def _w(x, lam): return lam.to(x.dtype).view(-1, *[1]*(x.ndim-1))
def index_select_mix(x, perm, lam, out):
    "The gather `mix` used before issue 17 (removed: beside a busy process it collapsed 5-12x on the 224px batch); a candidate only"
    return torch.index_select(x, 0, perm, out=out).lerp_(x, _w(x, lam))

PATHS = {  # name: f(x, perm, lam, recycler) -> mixed batch
    'library: mix_inputs((x,), perm, lam, rcs) (the callback)': lambda x,p,l,rc: mix_inputs((x,), p, l, [rc])[0][0],
    'recycled: mix(out=Recycler) (index_copy_)': lambda x,p,l,rc: mix(x, p, l, out=rc.empty_like(x)),
    'fresh: mix(out=empty_like) (index_copy_)': lambda x,p,l,rc: mix(x, p, l, out=torch.empty_like(x)),
    'candidate: index_select(out=Recycler).lerp_ (removed path)': lambda x,p,l,rc: index_select_mix(x, p, l, rc.empty_like(x)),
    'plain x[perm].lerp_(x, w): mix(x, perm, lam)': lambda x,p,l,rc: mix(x, p, l),
}
PLAIN, OURS = 'plain x[perm].lerp_(x, w): mix(x, perm, lam)', 'library: mix_inputs((x,), perm, lam, rcs) (the callback)'

def paths_group(shape, dtype, dev, reps):
    "Each way of mixing one batch on the same tensors; each keeps its result until its next call, as the training loop"
    torch.manual_seed(0)
    x = torch.randn(shape, device=dev).to(dtype)
    perm, lam = sample_perm(shape[0], dev), sample_lam(shape[0], ALPHA, dev)
    held, rcs = {}, {}
    def call(k, f):
        rc = rcs.setdefault(k, Recycler())
        def g():
            held[k] = None  # the last batch is dropped (the Learner's xb replaced) before the next is mixed
            held[k] = f(x, perm, lam, rc)
        return g
    ref = torch.lerp(x[perm], x, _w(x, lam))
    res = run_group({k: call(k, f) for k,f in PATHS.items()}, reps, dev)
    for k in PATHS:  # every variant computes the same thing
        if isinstance(res[k], list) and not torch.equal(held[k], ref): res[k] = 'fails: a different result'
    reused = {k: rc.reused for k,rc in rcs.items() if rc.st is not None or rc.reused}
    return res, reused

def paths_summary(px)->list[str]:
    "Each speed path's gain: the median without it over the median with it (>1: it pays)"
    def m(res, k): return statistics.median(res[k]) if isinstance(res.get(k), list) else float('nan')
    out = ['\n#### What each speed path gains (median without / median with, this run; > 1 pays)\n',
           f'| batch | Recycler (fresh / recycled, index_copy_) | index_copy_ over index_select(out=), recycled | '
           f'the callback\'s mix (Recycler only over {RECYCLE_BYTES>>20} MB) vs plain x[perm].lerp_ |', '|---|---:|---:|---:|']
    for name,res in px.items():
        rc, fr = m(res, 'recycled: mix(out=Recycler) (index_copy_)'), m(res, 'fresh: mix(out=empty_like) (index_copy_)')
        isr = m(res, 'candidate: index_select(out=Recycler).lerp_ (removed path)')
        out.append(f'| {name} | {fr/rc:.2f} | {isr/rc:.2f} | {m(res, PLAIN)/m(res, OURS):.2f} |')
    return out

# ---- the mixed loss ----------------------------------------------------------------------------------------------
def loss_group(bs, ncls, dev, reps, backward:bool):
    torch.manual_seed(0)
    p0, y = torch.randn(bs, ncls, device=dev), torch.randint(0, ncls, (bs,), device=dev)
    pred = p0.clone().requires_grad_(backward)
    xb = torch.randn(bs, 1, device=dev)
    fa = _start_training(_learner(MixUp(ALPHA), dev=dev)); fa._split((xb, y)); fa('before_batch')
    us = _start_training(_learner(MixUpCallback(ALPHA), dev=dev)); us._split((xb, y)); us('before_batch')
    cb, perm, lam = us.mix_up, us.mix_up.perm, us.mix_up.lam
    crit = CrossEntropyLossFlat()
    soft = torch.lerp(F.one_hot(y[perm], ncls).float(), F.one_hot(y, ncls).float(), lam[:,None])
    def naive():
        return (lam*F.cross_entropy(pred, y, reduction='none') + (1-lam)*F.cross_entropy(pred, y[perm], reduction='none')).mean()
    def ours_learner(): cb('after_pred'); return us.loss_func(pred, y)
    fns = {'floor: plain F.cross_entropy': lambda: F.cross_entropy(pred, y),
           'mixup_cb MixUpLoss (armed by the callback)': ours_learner,
           'mixup_cb mixed_loss(F.cross_entropy)': lambda: mixed_loss(F.cross_entropy, pred, (y,), perm, lam),
           'mixup_cb mixed_loss(CrossEntropyLossFlat())': lambda: mixed_loss(crit, pred, (y,), perm, lam),
           'fastai v2 MixUp loss wrapper': lambda: fa.loss_func(pred, y),
           'naive lerp of two F.cross_entropy': naive,
           'soft-target CE (timm/torchvision mixed one-hot)': lambda: torch.sum(-soft*F.log_softmax(pred, -1), -1).mean()}
    if backward:
        def fb(f):
            def g(): f().backward(); pred.grad = None
            return g
        fns = {k: fb(f) for k,f in fns.items()}
    return run_group(fns, reps, dev)

# ---- the whole fastai training step ----------------------------------------------------------------------------------
def tiny_cnn(ncls=10):
    return nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, ncls))

def step_group(dev, rounds, steps, ncls=10):
    torch.manual_seed(0)
    batches = [(TensorImage(torch.randn(64, 3, 32, 32, device=dev)), TensorCategory(torch.randint(0, ncls, (64,), device=dev)))
               for _ in range(8)]
    init = tiny_cnn(ncls).state_dict()
    def make(cbs):
        m = tiny_cnn(ncls); m.load_state_dict(init)
        return _start_training(_learner(cbs, m.to(dev), dev=dev))
    learners = {'without MixUp': make([]), 'fastai v2 MixUp': make([MixUp(ALPHA)]), 'mixup_cb MixUpCallback': make([MixUpCallback(ALPHA)])}
    def block(learn):
        def f():
            for i in range(steps): learn.one_batch(i, batches[i%len(batches)])
        return f
    res = run_group({k: block(l) for k,l in learners.items()}, rounds, dev)
    return {k: [t/steps for t in v] for k,v in res.items()}

# ---- issue 17: each CPU op of the batch path, idle and beside busy loops (`--busy N [N ...]`) -------------------------
def _die_with_parent():
    "In a busy loop's process before it runs: the kernel kills it if the benchmark dies without stopping it (Linux)"
    try:
        import ctypes, signal
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception: pass

def _cpu_s(pid:int)->float:
    "CPU seconds (user+system) process `pid` has used so far, from /proc; nan where there is none"
    try: f = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split(); return (int(f[11])+int(f[12]))/os.sysconf('SC_CLK_TCK')
    except Exception: return float('nan')

def _cpu_times()->list[int]:
    "The machine's CPU time counters (user nice system idle iowait irq softirq steal ...), from /proc/stat"
    try: return [int(v) for v in open('/proc/stat').readline().split()[1:]]
    except Exception: return []

def _steal(t0, t1)->float:
    "The share of the CPUs' time the hypervisor gave to other machines between two `_cpu_times()` (a virtual machine's hidden neighbours)"
    if len(t0)<8 or len(t1)<8: return float('nan')
    d = [b-a for a,b in zip(t0, t1)]
    return d[7]/max(1, sum(d[:8]))

def _load()->float:
    try: return os.getloadavg()[0]
    except OSError: return float('nan')

class Busy:
    "`n` single-threaded Python busy loops (`while True: pass`), one process each, stopped by pid at the end of a `with` block, on an error or Ctrl-C too"
    def __init__(self, n:int): self.n,self.procs,self.cpu_s,self.wall_s = n,[],0.,0.
    def __enter__(self):
        try:
            for _ in range(self.n):  # -S: no site import, so each is spinning within a few ms
                self.procs.append(subprocess.Popen([sys.executable, '-S', '-c', 'while True: pass'], stdin=subprocess.DEVNULL,
                                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent))
            time.sleep(0.3)
            for p in self.procs:
                if p.poll() is not None: raise RuntimeError(f'busy loop {p.pid} exited with {p.returncode}')
        except BaseException:
            self.stop(); raise
        self.t0 = time.perf_counter()
        return self
    @property
    def pids(self)->list[int]: return [p.pid for p in self.procs]
    def stop(self):
        if not self.procs: return
        self.cpu_s,self.wall_s = sum(_cpu_s(p) for p in self.pids),time.perf_counter()-getattr(self, 't0', time.perf_counter())
        for p in self.procs:
            if p.poll() is None: os.kill(p.pid, signal.SIGTERM)
        for p in self.procs:
            try: p.wait(5)
            except subprocess.TimeoutExpired: os.kill(p.pid, signal.SIGKILL); p.wait()
        self.procs = []
    def __exit__(self, *exc): self.stop()

def condition_name(n:int, la0:float)->str:
    if not n: return f'idle: no neighbours started by the benchmark (machine load avg {la0:.2f} at its start)'
    return f'busy {n}: {n} `while True: pass` process(es) started by the benchmark (machine load avg {la0:.2f} at its start)'

def _keep(fns:dict)->dict:
    "Each `fns[k]()` with its result kept until that contender's next call, as a Learner keeps `xb` until the next batch"
    held = {}
    def wrap(k, f):
        def g(): held[k] = None; held[k] = f()
        return g
    return {k: wrap(k, f) for k,f in fns.items()}, held

# candidates: what the library could use instead of its speed code, written here so each is timed beside it
def inv_perm(perm:Tensor)->Tensor: return torch.empty_like(perm).scatter_(0, perm, torch.arange(len(perm), device=perm.device))
def gather_index_copy(x, perm, out): return out.index_copy_(0, inv_perm(perm), x)  # out[inv[i]] = x[i], so out[j] = x[perm[j]]

def _fold(g:Tensor)->Tensor:
    m = g.amax(0)
    return m.div(g.sum(0)).masked_fill_(m<=torch.finfo(m.dtype).tiny, 1.).float()
def lam_public_gamma(bs, alpha, device=None, **kw):
    "`sample_lam` through the public `torch.distributions.Gamma` (no generator), folded the same way"
    c = torch.full((2,bs), float(alpha), dtype=torch.float64, device=device)
    return _fold(torch.distributions.Gamma(c, torch.ones_like(c), **kw).sample())
def lam_public_beta(bs, alpha, device=None, **kw):
    "`bs` lambdas from the public `torch.distributions.Beta`, folded to `max(t, 1-t)`"
    c = torch.tensor(float(alpha), dtype=torch.float64, device=device)
    t = torch.distributions.Beta(c, c, **kw).sample((bs,))
    return torch.maximum(t, 1-t).float()
def lam_fork_rng(bs, alpha, generator):
    "The library's fallback where torch has no native sampler: public Gamma drawn from `generator`'s state under `fork_rng`"
    with torch.random.fork_rng(devices=[]):
        torch.set_rng_state(generator.get_state())
        l = lam_public_gamma(bs, alpha, validate_args=False)
        generator.set_state(torch.get_rng_state())
    return l

def ce_two_lerped(pred, y, perm, lam):
    "The mixed CE without fusion: two `F.cross_entropy(reduction='none')` lerped per sample, then the mean"
    return torch.lerp(F.cross_entropy(pred, y[perm], reduction='none'), F.cross_entropy(pred, y, reduction='none'), lam).mean()

def one_thread(f):
    "`f` run with torch at 1 thread: no parallel region whose second thread waits for a CPU a neighbour holds"
    def g():
        n = torch.get_num_threads(); torch.set_num_threads(1)
        try: return f()
        finally: torch.set_num_threads(n)
    return g

def draws_group(bs, reps):
    gen = torch.Generator().manual_seed(0)
    fns = {'perm: sample_perm (randperm + cyclic scatter)': lambda: sample_perm(bs),
           'perm: torch.randperm alone': lambda: torch.randperm(bs),
           'lam: sample_lam (native torch._standard_gamma)': lambda: sample_lam(bs, ALPHA),
           'lam: sample_lam with a generator (native)': lambda: sample_lam(bs, ALPHA, generator=gen),
           'lam: public Gamma, folded (candidate)': lambda: lam_public_gamma(bs, ALPHA),
           'lam: public Gamma validate_args=False (candidate)': lambda: lam_public_gamma(bs, ALPHA, validate_args=False),
           'lam: public Beta, folded (candidate)': lambda: lam_public_beta(bs, ALPHA),
           'lam: public Beta validate_args=False (candidate)': lambda: lam_public_beta(bs, ALPHA, validate_args=False),
           'lam: fork_rng fallback with a generator (library fallback)': lambda: lam_fork_rng(bs, ALPHA, gen)}
    return run_group(fns, reps, torch.device('cpu'))

def ops_group(shape, reps):
    "Gather, lerp, output memory and whole mixes of one batch (fixed perm and lam), each result kept until its next call"
    torch.manual_seed(0)
    x = torch.randn(shape)
    bs = shape[0]
    perm, lam = sample_perm(bs), sample_lam(bs, ALPHA)
    w, xp = _w(x, lam), x[perm]
    buf = xp.clone()
    rc = {k: Recycler() for k in ('icr', 'mi', 'mr', 'isr', 'm1', 'efr')}
    fns = {'gather: x[perm]': lambda: x[perm],
           'gather: index_select(out=fresh) (removed)': lambda: torch.index_select(x, 0, perm, out=torch.empty_like(x)),
           'gather: index_copy_(inverse perm), fresh': lambda: gather_index_copy(x, perm, torch.empty_like(x)),
           'gather: index_copy_(inverse perm), Recycler': lambda: gather_index_copy(x, perm, rc['icr'].empty_like(x)),
           'lerp: buf.lerp_(x, w) in place': lambda: buf.lerp_(x, w),
           'memory: torch.empty_like(x).fill_(0) (first touch)': lambda: torch.empty_like(x).fill_(0),
           'memory: Recycler.empty_like(x).fill_(0)': lambda: rc['efr'].empty_like(x).fill_(0),
           MIX_LIB: lambda: mix_inputs((x,), perm, lam, [rc['mi']])[0][0],
           'mix: mix(out=Recycler) (index_copy_)': lambda: mix(x, perm, lam, out=rc['mr'].empty_like(x)),
           'mix: mix(out=torch.empty_like(x)) (index_copy_, no Recycler)': lambda: mix(x, perm, lam, out=torch.empty_like(x)),
           MIX_PLAIN: lambda: mix(x, perm, lam),
           'mix: index_select(out=fresh).lerp_ (removed)': lambda: index_select_mix(x, perm, lam, torch.empty_like(x)),
           'mix: index_select(out=Recycler).lerp_ (the removed mix)': lambda: index_select_mix(x, perm, lam, rc['isr'].empty_like(x)),
           'mix: mix(out=Recycler) at 1 thread (candidate)': one_thread(lambda: mix(x, perm, lam, out=rc['m1'].empty_like(x)))}
    fns, held = _keep(fns)
    res = run_group(fns, reps, torch.device('cpu'))
    ref = torch.lerp(xp, x, w)
    for k,v in res.items():  # every gather and mix computes the same thing
        if not isinstance(v, list): continue
        exp = xp if k.startswith('gather') else ref if k.startswith('mix') else None
        if exp is not None and not torch.equal(held[k], exp): res[k] = 'fails: a different result'
    return res

MIX_LIB = f'mix: mix_inputs with Recyclers (the callback: index_copy_, Recycler only over {RECYCLE_BYTES>>20} MB)'
MIX_PLAIN = 'mix: x[perm].lerp_(x, w) (plain: mix without out)'

def ce_fused_old(pred, y, perm, lam):
    "The fused mixed CE the library used before (removed), for class indices without weights or ignored targets, mean"
    idx = torch.stack((y, y[perm]), 1)
    w = torch.stack((lam, 1-lam), 1).to(pred.dtype).mul_(-1/y.numel())
    return (pred.log_softmax(1).gather(1, idx)*w).sum()

CE_LIB, CE_ARMED, CE_FLOOR = ('loss: library mixed_loss(F.cross_entropy) (one log-softmax, two nll_loss)',
                              'loss: MixUpLoss(CrossEntropyLossFlat) armed by the callback', 'loss: plain F.cross_entropy (floor)')
CE_TWO, CE_FUSED = 'loss: two F.cross_entropy(none) lerped (candidate)', 'loss: old fused _mixed_ce (removed; candidate)'

def loss17_group(bs, ncls, reps, backward:bool):
    torch.manual_seed(0)
    pred, y = torch.randn(bs, ncls).requires_grad_(backward), torch.randint(0, ncls, (bs,))
    xb = torch.randn(bs, 1)
    fa = _start_training(_learner(MixUp(ALPHA))); fa._split((xb, y)); fa('before_batch')
    us = _start_training(_learner(MixUpCallback(ALPHA))); us._split((xb, y)); us('before_batch')
    cb = us.mix_up
    perm, lam = cb.record.perm, cb.record.lam
    ref = mixed_loss(F.cross_entropy, pred, (y,), perm, lam)
    for f in (ce_two_lerped, ce_fused_old): torch.testing.assert_close(f(pred, y, perm, lam), ref)  # the same loss
    def ours_learner(): cb('after_pred'); return us.loss_func(pred, y)
    fns = {CE_FLOOR: lambda: F.cross_entropy(pred, y),
           CE_LIB: lambda: mixed_loss(F.cross_entropy, pred, (y,), perm, lam),
           CE_ARMED: ours_learner,
           CE_TWO: lambda: ce_two_lerped(pred, y, perm, lam),
           CE_FUSED: lambda: ce_fused_old(pred, y, perm, lam),
           'loss: fastai v2 MixUp loss wrapper': lambda: fa.loss_func(pred, y)}
    if backward:
        def fb(f):
            def g(): f().backward(); pred.grad = None
            return g
        fns = {k: fb(f) for k,f in fns.items()}
    else:
        lp = pred.log_softmax(1)
        fns.update({'loss step: pred.log_softmax(1)': lambda: pred.log_softmax(1),
                    'loss step: F.nll_loss(log_softmax, y, none)': lambda: F.nll_loss(lp, y, reduction='none'),
                    'loss step: F.cross_entropy(reduction=none)': lambda: F.cross_entropy(pred, y, reduction='none'),
                    'loss step: y[perm]': lambda: y[perm]})
    return run_group(fns, reps, torch.device('cpu'))

class _PlainCb(Callback):
    "A plain MixUp callback for reference: fresh draws and `x[perm].lerp_(x, w)`, nothing else"
    order = 100
    def before_batch(self):
        x = self.learn.xb[0]; bs = x.shape[0]
        perm, lam = torch.randperm(bs), lam_public_beta(bs, ALPHA, validate_args=False)
        self.learn.xb = (x[perm].lerp_(x, _w(x, lam)),)

def batch_group(shape, reps, ncls=10):
    "The whole before_batch through a fastai Learner, against fastai v2's MixUp and a plain lerp"
    torch.manual_seed(0)
    x, y = torch.randn(shape), torch.randint(0, ncls, (shape[0],))
    b = (TensorImage(x), TensorCategory(y))
    perm, lam = sample_perm(shape[0]), sample_lam(shape[0], ALPHA)
    w = _w(x, lam)
    ls = {'before_batch: mixup_cb MixUpCallback': _start_training(_learner(MixUpCallback(ALPHA))),
          'before_batch: fastai v2 MixUp': _start_training(_learner(MixUp(ALPHA))),
          'before_batch: mixup_cb CutMixCallback': _start_training(_learner(CutMixCallback(1.))),
          'before_batch: a plain callback (randperm, Beta, x[perm].lerp_)': _start_training(_learner(_PlainCb())),
          'before_batch: no callback (dispatch floor)': _start_training(_learner([]))}
    fns = {k: partial(_fire_before_batch, l, b) for k,l in ls.items()}
    fns['plain x[perm].lerp_(x, w) (fixed perm, w; no Learner)'] = lambda: x[perm].lerp_(x, w)
    fns, held = _keep(fns)
    return run_group(fns, reps, torch.device('cpu'))

def cutmix_group(shape, reps):
    "CutMix's paste: boxes, masks and `torch.where` over the batch (fixed perm and lam)"
    torch.manual_seed(0)
    x = torch.randn(shape); bs,H,W = shape[0],shape[-2],shape[-1]
    perm, lam = sample_perm(bs), sample_lam(bs, 1.)
    boxes = sample_boxes(lam, H, W); mask = box_mask(boxes, H, W)
    fns = {'cutmix: cutmix_inputs (boxes, mask, paste)': lambda: cutmix_inputs((x,), perm, lam),
           'cutmix: sample_boxes + box_mask': lambda: box_mask(sample_boxes(lam, H, W), H, W),
           'cutmix: paste alone (torch.where(mask, x[perm], x))': lambda: paste(x, perm, mask),
           'cutmix: for reference, MixUp x[perm].lerp_(x, w)': lambda: mix(x, perm, lam)}
    fns, held = _keep(fns)
    return run_group(fns, reps, torch.device('cpu'))

def manifold_group(shape, reps):
    "Manifold MixUp's hook on the tiny CNN's first conv: before_batch, forward with the hook, after_pred (no grad)"
    torch.manual_seed(0)
    x, y = torch.randn(shape), torch.randint(0, 10, (shape[0],))
    b = (TensorImage(x), TensorCategory(y))
    m = tiny_cnn().eval()
    mm = _start_training(_learner(ManifoldMixUpCallback(2., modules=[m[0]], use_input=False), m))
    with torch.no_grad(): act = m[0](x)
    perm, lam = sample_perm(shape[0]), sample_lam(shape[0], 2.)
    def manifold():
        mm._split(b); mm('before_batch'); mm.pred = mm.model(*mm.xb); mm('after_pred'); mm('after_batch')
        return mm.pred
    fns = {'manifold: forward, no callback': lambda: m(x),
           'manifold: before_batch + forward with the mixing hook + after_pred': manifold,
           'manifold: mix_output on the hooked activation alone': lambda: mix_output(act, perm, lam)}
    fns, held = _keep(fns)
    with torch.no_grad(): return run_group(fns, reps, torch.device('cpu'))

class _SynthImages:
    "Small images made in the DataLoader's workers with some real work per item, as decoding and augmenting would be"
    def __init__(self, n, work): self.n,self.work = n,work
    def __len__(self): return self.n
    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        x = torch.rand(1, 3, 48, 48, generator=g)
        for _ in range(self.work): x = F.avg_pool2d(x, 3, 1, 1)  # a blur per pass, as resizing and augmenting cost
        o = int(torch.randint(0, 17, (), generator=g))
        return TensorImage(x[0, :, o:o+32, o:o+32].contiguous()), TensorCategory(i%10)

def _children()->list[int]:
    me = str(os.getpid()); out = []
    for p in os.listdir('/proc'):
        if not p.isdigit(): continue
        try:
            if open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[1]==me: out.append(int(p))
        except Exception: pass
    return out

def workers_step_group(rounds, steps, work, skip=()):
    "Learner.one_batch on batches from one fastai DataLoader with num_workers=2 (its workers are the neighbours), in rotation"
    torch.manual_seed(0)
    dl = DataLoader(_SynthImages(64*10**5, work), bs=64, num_workers=2, drop_last=True)
    init = tiny_cnn().state_dict()
    def make(cbs):
        m = tiny_cnn(); m.load_state_dict(init)
        return _start_training(_learner(cbs, m))
    ls = {'step: without MixUp': make([]), 'step: mixup_cb MixUpCallback': make([MixUpCallback(ALPHA)]),
          'step: fastai v2 MixUp': make([MixUp(ALPHA)])}
    res, wait = {k: [] for k in ls}, []
    it = iter(dl)
    try:
        for _ in range(steps): next(it)  # the workers started and their queue full
        kids = [p for p in _children() if p not in skip]
        c0, t0 = sum(_cpu_s(p) for p in kids), time.perf_counter()
        rng, order = random.Random(0), list(ls)
        for _ in range(rounds):
            rng.shuffle(order)
            for k in order:
                tot = 0.
                for i in range(steps):
                    t = time.perf_counter(); b = next(it); wait.append(time.perf_counter()-t)
                    t = time.perf_counter(); ls[k].one_batch(i, b); tot += time.perf_counter()-t
                res[k].append(tot/steps)
        util = (sum(_cpu_s(p) for p in kids)-c0)/(time.perf_counter()-t0)
    finally: del it
    return res, util, statistics.median(wait)

ISSUE17 = ('draws', 'ops', 'loss17', 'batch', 'cutmix', 'manifold', 'workers')
SHAPES17 = [(256,3,32,32), (64,3,224,224)]

def run_condition(n:int, groups, q:bool)->dict:
    "Every selected issue-17 group in one condition (`n` busy loops beside it); {(group, shape): result}, with the load"
    r = {}
    # (trimmed from 300/100/25/200/20 so that three conditions fit in about 15 minutes on 2 shared CPUs)
    rs = dict(draws=150, small=50, big=12, loss=100, steps_rounds=10) if not q else dict(draws=30, small=15, big=5, loss=30, steps_rounds=4)
    with Busy(n) as busy:
        r['load0'], t0 = _load(), _cpu_times()
        print(f'\n## {condition_name(n, r["load0"])}', flush=True)
        for shape in SHAPES17:
            reps = rs['small'] if shape[0]==256 else rs['big']
            if 'draws' in groups: r[('draws', shape)] = draws_group(shape[0], rs['draws'])
            if 'ops' in groups: r[('ops', shape)] = ops_group(shape, reps)
            if 'batch' in groups: r[('batch', shape)] = batch_group(shape, reps)
            if 'cutmix' in groups: r[('cutmix', shape)] = cutmix_group(shape, reps)
            if 'manifold' in groups: r[('manifold', shape)] = manifold_group(shape, max(5, reps//2))
            print(f'  {"x".join(map(str, shape))} done, load avg {_load():.2f}', flush=True)
        if 'loss17' in groups:
            for bw in (False, True): r[('loss17', bw)] = loss17_group(256, 1000, rs['loss'], bw)
        if 'workers' in groups:
            r[('workers',)] = workers_step_group(rs['steps_rounds'], 5, WORK, skip=busy.pids)
        r['load1'], r['steal'] = _load(), _steal(t0, _cpu_times())
        busy.stop(); r['busy_cpu'] = (busy.cpu_s, busy.wall_s)
    return r

WORK = 4  # blur passes per item in the DataLoader's workers

def _med(res, k): return statistics.median(res[k]) if isinstance(res, dict) and isinstance(res.get(k), list) else float('nan')
def _worst(res, k): return max(res[k]) if isinstance(res, dict) and isinstance(res.get(k), list) else float('nan')

def _sweep_table(title, conds, key, unit='ms', scale=1e3)->list[str]:
    "One row per contender: median and worst round in each condition"
    ns = [n for n in conds if key in conds[n]]
    if not ns: return []
    out = [f'\n#### {title}\n', '| contender | ' + ' | '.join(f'{_cname(n)}: median {unit} | worst' for n in ns) + ' |',
           '|---|' + '---:|---:|'*len(ns)]
    for k in conds[ns[0]][key]:
        cells = []
        for n in ns:
            v = conds[n][key].get(k)
            if not isinstance(v, list): cells += [str(v), '']
            else: cells += [f'{statistics.median(v)*scale:.3f}', f'{max(v)*scale:.3f}']
        out.append(f'| {k} | ' + ' | '.join(cells) + ' |')
    return out

def _cname(n:int)->str: return 'idle' if not n else f'busy {n}'

def goals17(conds)->list[str]:
    "The issue's goals per condition, each a ratio of medians from that condition's run"
    ns = list(conds)
    out = ['\n#### Goals (ratios of medians from one run per condition)\n',
           '| goal | ' + ' | '.join(_cname(n) for n in ns) + ' |', '|---|' + ':---:|'*len(ns)]
    us, fa, pl = 'before_batch: mixup_cb MixUpCallback', 'before_batch: fastai v2 MixUp', 'plain x[perm].lerp_(x, w) (fixed perm, w; no Learner)'
    def row(txt, f, lim):
        cells = []
        for n in ns:
            r = f(conds[n]); l = lim(n)
            cells.append('n/a' if r!=r else f'{r:.2f}x (<= {l}) {"met" if r<=l else "**not met**"}')
        out.append(f'| {txt} | ' + ' | '.join(cells) + ' |')
    S, B = SHAPES17
    bt = lambda c, sh: c.get(('batch', sh), {})
    row('mix 256x3x32x32 vs fastai v2 MixUp (before_batch)', lambda c: _med(bt(c,S), us)/_med(bt(c,S), fa), lambda n: 0.33 if not n else 0.5)
    row('mix 256x3x32x32 vs plain x[perm].lerp_(x, w)', lambda c: _med(bt(c,S), us)/_med(bt(c,S), pl), lambda n: 1.25)
    row('mix 64x3x224x224 vs fastai v2 MixUp (before_batch)', lambda c: _med(bt(c,B), us)/_med(bt(c,B), fa), lambda n: 0.25 if not n else 0.5)
    lb = lambda c: c.get(('loss17', True), {})
    row('mixed CE fwd+bwd (256,1000), MixUpLoss armed by the callback, vs F.cross_entropy', lambda c: _med(lb(c), CE_ARMED)/_med(lb(c), CE_FLOOR), lambda n: 1.6)
    st = lambda c: c.get(('workers',), ({},))[0]
    row('CPU training step (num_workers=2) with MixUp vs without', lambda c: _med(st(c), 'step: mixup_cb MixUpCallback')/_med(st(c), 'step: without MixUp'), lambda n: 1.05)
    out.append('| (reported) fastai v2 MixUp step vs without | ' + ' | '.join(f'{_med(st(conds[n]), "step: fastai v2 MixUp")/_med(st(conds[n]), "step: without MixUp"):.2f}x' for n in ns) + ' |')
    return out

def devices17(conds)->list[str]:
    "What each speed device gains: median (and worst round) without it over with it, per condition; > 1 pays"
    ns = list(conds)
    out = ['\n#### What each speed device gains (the candidate without it / the library\'s path with it; > 1 pays; median, and worst round over worst round)\n',
           '| device | batch | ' + ' | '.join(f'{_cname(n)} median | worst' for n in ns) + ' |', '|---|---|' + '---:|---:|'*len(ns)]
    def row(dev, batch, key, without, with_):
        cells = []
        for n in ns:
            r = conds[n].get(key, {})
            cells += [f'{_med(r, without)/_med(r, with_):.2f}', f'{_worst(r, without)/_worst(r, with_):.2f}']
        out.append(f'| {dev} | {batch} | ' + ' | '.join(cells) + ' |')
    for sh in SHAPES17:
        b = 'x'.join(map(str, sh))
        big = 4*torch.Size(sh).numel() > RECYCLE_BYTES
        row('index_copy_ gather (library) over index_select(out=) (removed), whole mix, recycled', b, ('ops', sh), 'mix: index_select(out=Recycler).lerp_ (the removed mix)', 'mix: mix(out=Recycler) (index_copy_)')
        row('index_copy_ gather over index_select(out=), gather alone, fresh', b, ('ops', sh), 'gather: index_select(out=fresh) (removed)', 'gather: index_copy_(inverse perm), fresh')
        row('index_copy_ gather (fresh) over x[perm], whole mix', b, ('ops', sh), MIX_PLAIN, 'mix: mix(out=torch.empty_like(x)) (index_copy_, no Recycler)')
        row('Recycler (whole mix: fresh / recycled, index_copy_)' + (' (used: over 32 MB)' if big else ' (not used: under 32 MB)'), b, ('ops', sh), 'mix: mix(out=torch.empty_like(x)) (index_copy_, no Recycler)', 'mix: mix(out=Recycler) (index_copy_)')
        row('Recycler (memory first touch: fresh / recycled)', b, ('ops', sh), 'memory: torch.empty_like(x).fill_(0) (first touch)', 'memory: Recycler.empty_like(x).fill_(0)')
        row('the callback\'s mix (mix_inputs) over plain x[perm].lerp_', b, ('ops', sh), MIX_PLAIN, MIX_LIB)
        row('candidate: 1 thread over 2 threads (mix(out=Recycler))', b, ('ops', sh), 'mix: mix(out=Recycler) (index_copy_)', 'mix: mix(out=Recycler) at 1 thread (candidate)')
        row('native _standard_gamma over public Gamma (validate_args=False)', f'bs {sh[0]}', ('draws', sh), 'lam: public Gamma validate_args=False (candidate)', 'lam: sample_lam (native torch._standard_gamma)')
        row('native _standard_gamma over public Beta (validate_args=False)', f'bs {sh[0]}', ('draws', sh), 'lam: public Beta validate_args=False (candidate)', 'lam: sample_lam (native torch._standard_gamma)')
        row('native with a generator over the fork_rng fallback', f'bs {sh[0]}', ('draws', sh), 'lam: fork_rng fallback with a generator (library fallback)', 'lam: sample_lam with a generator (native)')
    for bw,t in ((True, 'fwd+bwd'), (False, 'fwd')):
        row(f'one log-softmax (library) over two F.cross_entropy lerped, {t}', '(256,1000)', ('loss17', bw), CE_TWO, CE_LIB)
        row(f'library over the old fused _mixed_ce, {t} (< 1: fused was faster)', '(256,1000)', ('loss17', bw), CE_FUSED, CE_LIB)
    return out

def report17(conds, cmd, q)->list[str]:
    lines = ['### MixUp benchmark, issue 17: each CPU op of the batch path, idle and beside busy loops', '',
             f'Machine: {machine(torch.device("cpu"))}. ', f'Command: `{cmd}`, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. ',
             'Conditions, one after the other in this one command (the machine is shared: other processes ran too, see the load):']
    for n,c in conds.items():
        cpu, wall = c['busy_cpu']
        lines.append(f'- **{_cname(n)}**: {condition_name(n, c["load0"])}; load avg {c["load1"]:.2f} at its end' +
                     (f'; the busy loops used {cpu:.0f} CPU-s in {wall:.0f} s' if n else '') + '.')
    if any(('workers',) in c for c in conds.values()):
        lines.append('- Training step rows: the DataLoader\'s 2 workers ran beside the step in every condition (' + '; '.join(
            f'{_cname(n)}: workers used {c[("workers",)][1]:.2f} CPUs, median wait for a batch {c[("workers",)][2]*1e3:.2f} ms' for n,c in conds.items() if ('workers',) in c) + ').')
    lines += ['', 'Each contender\'s median over its rounds and its worst round; rounds interleaved in a new shuffled order each time. '
              'Every result is kept until that contender\'s next call, as a Learner keeps `xb`. Candidates (public Gamma/Beta, the removed index_select(out=) gather, '
              'two cross-entropies lerped, the removed fused cross-entropy, mix at 1 thread, the plain callback) are written in bench.py and timed beside the library.' + (' **--quick: few rounds, not for decisions.**' if q else '')]
    lines += goals17(conds) + devices17(conds)
    for sh in SHAPES17:
        b = 'x'.join(map(str, sh))
        lines += _sweep_table(f'Draws, bs {sh[0]} (us)', conds, ('draws', sh), 'us', 1e6)
        lines += _sweep_table(f'Gather, lerp, output memory and whole mix, {b} float32 (fixed perm and lam)', conds, ('ops', sh))
        lines += _sweep_table(f'Whole before_batch through a fastai Learner, {b} float32', conds, ('batch', sh))
        lines += _sweep_table(f'CutMix\'s paste, {b} float32', conds, ('cutmix', sh))
        lines += _sweep_table(f'Manifold MixUp\'s hook, tiny CNN, {b} float32, no grad', conds, ('manifold', sh))
    lines += _sweep_table('Mixed cross-entropy (256,1000), forward, with its steps (us)', conds, ('loss17', False), 'us', 1e6)
    lines += _sweep_table('Mixed cross-entropy (256,1000), forward+backward (us)', conds, ('loss17', True), 'us', 1e6)
    wc = {n: {('workers',): c[('workers',)][0]} for n,c in conds.items() if ('workers',) in c}
    lines += _sweep_table(f'CPU training step: tiny CNN, 64x3x32x32 from a fastai DataLoader with num_workers=2 ({WORK} blur passes per item), Learner.one_batch per step', wc, ('workers',))
    return lines

def main17(a, argv):
    groups = [g for g in ISSUE17 if a.only is None or g in a.only]
    cmd = 'python benchmarks/bench.py' + ' '.join(['']+(argv if argv is not None else sys.argv[1:]))
    if a.threads: torch.set_num_threads(a.threads)
    conds = {n: run_condition(n, groups, a.quick) for n in a.busy}
    lines = report17(conds, cmd, a.quick)
    print('\n'.join(lines), flush=True)
    out = Path(a.out or Path(__file__).parent/f'results-cpu-busy-{"-".join(map(str, a.busy))}{"-quick" if a.quick else ""}.md')
    out.write_text('\n'.join(lines)+'\n')
    print(f'\nwritten to {out}', file=sys.stderr)


# ---- the run -----------------------------------------------------------------------------------------------------
def machine(dev)->str:
    cpu = platform.processor() or platform.machine()
    try: cpu = next(l.split(':',1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except Exception: pass
    s = (f'{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads, '
         f'Python {platform.python_version()}, mixup_cb {mixup_cb.__version__}')
    if dev.type=='cuda': s = f'{torch.cuda.get_device_name(dev)}; host: {s}'
    try: s += f'; load average at start {os.getloadavg()[0]:.1f}'
    except OSError: pass
    return s

def goals(mx, ls, st)->list[str]:
    "The issue's goals, each with its measured ratio (ratios of medians from this run)"
    def m(res, k): return statistics.median(res[k]) if isinstance(res.get(k), list) else float('nan')
    out = ['\n#### Goals (ratios of medians, this run)\n', '| goal | measured | met |', '|---|---:|:---:|']
    def row(txt, v, ok): out.append(f'| {txt} | {v:.2f}x | {"yes" if ok else "no"} |')
    big, small = mx.get(((64,3,224,224), 'float32')), mx.get(((256,3,32,32), 'float32'))
    us, fa, cp = 'mixup_cb (Learner event)', 'fastai v2 MixUp (Learner event)', 'copy floor: out.copy_(x)'
    if big:
        r = m(big, fa)/m(big, us); row('mixing 64x3x224x224 f32: >= 4x faster than fastai v2 MixUp', r, r>=4)
        r = m(big, us)/m(big, cp); row('mixing 64x3x224x224 f32: <= 2x the plain copy', r, r<=2)
    if small:
        r = m(small, fa)/m(small, us); row('mixing 256x3x32x32 f32: >= 3x faster than fastai v2 MixUp', r, r>=3)
        d = m(small, 'dispatch floor: Learner event, no mixing')
        r = (m(small, fa)-d)/(m(small, us)-d); out.append(f'| (for reference) the same, net of the Learner\'s event dispatch both pay | {r:.2f}x | |')
    for (bs,c,bw),res in ls.items():
        if not bw: continue
        u, fl, fw = m(res, 'mixup_cb MixUpLoss (armed by the callback)'), m(res, 'floor: plain F.cross_entropy'), m(res, 'fastai v2 MixUp loss wrapper')
        row(f'mixed CE ({bs},{c}) fwd+bwd: <= 1.6x plain CE', u/fl, u/fl<=1.6)
        row(f'mixed CE ({bs},{c}) fwd+bwd: >= 3x less than fastai wrapper', fw/u, fw/u>=3)
    if st:
        r = m(st, 'mixup_cb MixUpCallback')/m(st, 'without MixUp'); row('training step, tiny CNN 64x3x32x32: <= 1.05x without MixUp', r, r<=1.05)
        r = m(st, 'fastai v2 MixUp')/m(st, 'without MixUp'); out.append(f'| (for reference) fastai v2 MixUp training step vs without | {r:.2f}x | |')
    return out if len(out)>3 else []

def main(argv=None):
    # A SIGTERM ends the run as an exception would, so every `with` block stops its busy processes
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--device', default='cpu', help="'cpu' or 'cuda' (or 'cuda:1', ...)")
    ap.add_argument('--quick', action='store_true', help='few repeats: a look in well under a minute, not for the README')
    ap.add_argument('--threads', type=int, default=None, help="torch CPU threads (default: torch's own choice)")
    ap.add_argument('--out', default=None, help='markdown file to write (default: benchmarks/results-<device type>[-contended][-quick][-only-...].md)')
    ap.add_argument('--contention', type=int, default=0, metavar='N',
                    help='run N busy background processes for the whole run, as DataLoader workers would compete for the CPUs (default 0)')
    ap.add_argument('--contention-kind', choices=('matmul', 'spin'), default='matmul',
                    help="what each busy process runs: a torch matmul loop at torch's default threads, or a pure-Python spin")
    ap.add_argument('--busy', type=int, nargs='+', default=None, metavar='N',
                    help='issue 17: time each CPU op of the batch path once per N given (e.g. --busy 0 1 2), beside N single-threaded '
                         '`while True: pass` processes started and stopped by the benchmark (0: none started)')
    ap.add_argument('--only', nargs='+', choices=GROUPS+ISSUE17, default=None,
                    help=f'run only these groups (default: all of {", ".join(GROUPS)}; with --busy: all of {", ".join(ISSUE17)})')
    a = ap.parse_args(argv)
    if a.contention<0: ap.error('--contention must be >= 0')
    if a.busy is not None:
        if any(n<0 for n in a.busy): ap.error('--busy takes counts >= 0')
        if a.contention or a.device!='cpu': ap.error('--busy times CPU ops; it does not combine with --contention or --device')
        return main17(a, argv)
    with Contention(a.contention, a.contention_kind) as busy: _run(a, argv, busy)

GROUPS = ('mixing', 'paths', 'loss', 'step')

def _run(a, argv, busy):
    if a.threads: torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    if dev.type=='cuda' and not torch.cuda.is_available(): sys.exit('--device cuda: no GPU is visible to torch')
    q = a.quick
    reps_small, reps_big, reps_loss, rounds, steps = (5, 3, 10, 4, 5) if q else (200, 40, 300, 60, 10)
    reps_paths = 30 if q else 60  # enough for a steady median even with --quick: the question this group answers is close
    if dev.type=='cuda': reps_big = reps_small
    groups = set(a.only or GROUPS) & set(GROUPS)
    cmd = 'python benchmarks/bench.py' + ' '.join(['']+(argv if argv is not None else sys.argv[1:]))
    lines = [f'### MixUp benchmark: {dev.type}', '',
             f'Machine: {machine(dev)}. ', f'Command: `{cmd}`, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. ',
             f'Contention: {busy.describe()}. ',
             'Median of repeats interleaved in a new shuffled order each round (min, max); ratios are of medians from this run. alpha=0.4, 10 classes for the peers\' one-hot targets.']
    print('\n'.join(lines), flush=True)
    def emit(ls):
        lines.extend(ls); print('\n'.join(ls), flush=True)
    mx, lsr, px, st = {}, {}, {}, None
    if 'mixing' in groups:
        emit(['\n### Mixing one batch: draws, shuffle, mixed inputs'])
        for shape,dt in [((256,3,32,32), torch.float32), ((64,3,224,224), torch.float32), ((64,3,224,224), torch.bfloat16)]:
            res = mixing_group(shape, dt, dev, reps_small if shape[0]==256 else reps_big)
            mx[(shape, str(dt).split('.')[1])] = res
            emit(table(f'{"x".join(map(str,shape))} {str(dt).split(".")[1]}', res, 'copy floor: out.copy_(x)', 'mixup_cb (Learner event)'))
    if 'paths' in groups:
        emit(['\n### The speed paths of mix: one batch mixed (fixed perm and lam), each result kept until that variant\'s next call',
              f'\nrecycled: out= from a `Recycler`; fresh: new memory each call; the callback recycles only batches over {RECYCLE_BYTES>>20} MB; '
              'index_select(out=) is the gather `mix` used before issue 17, kept here as a candidate.'])
        for shape in [(256,3,32,32), (64,3,160,160), (64,3,224,224)]:
            name = f'{"x".join(map(str,shape))} float32 ({4*torch.Size(shape).numel()/2**20:.1f} MB)'
            res, reused = paths_group(shape, torch.float32, dev, reps_paths)
            px[name] = res
            emit(table(name, res, PLAIN, OURS))
            ru = '; '.join(f'{k.split(":")[0]}: {v}' for k,v in reused.items()) or 'none (GPU, or no storage use count)'
            emit([f'\nRecycler reuses (of {reps_paths+2} calls): {ru}.'])
        emit(paths_summary(px))
    if 'loss' in groups:
        emit(['\n### The mixed loss (cross-entropy, CrossEntropyLossFlat in the Learners)'])
        for bs,c in [(256,10), (256,1000)]:
            for bw in (False, True):
                res = loss_group(bs, c, dev, reps_loss, bw)
                lsr[(bs,c,bw)] = res
                emit(table(f'logits ({bs},{c}), {"forward+backward" if bw else "forward"}', res, 'floor: plain F.cross_entropy',
                           'mixup_cb MixUpLoss (armed by the callback)', unit='us', scale=1e6))
    if 'step' in groups:
        emit(['\n### The whole fastai training step: tiny CNN, 64x3x32x32 batches (per step)'])
        st = step_group(dev, rounds, steps)
        emit(table('Learner.one_batch: forward, loss, backward, SGD step, all callbacks', st, 'without MixUp', 'mixup_cb MixUpCallback'))
    emit(goals(mx, lsr, st))
    busy.stop()
    if busy.n:
        try: la = f'; load average at the end {os.getloadavg()[0]:.1f}'
        except OSError: la = ''
        emit([f'\nThe busy processes used {busy.cpu_s:.0f} CPU-seconds in {busy.wall_s:.0f} s of the run{la}.'])
    suffix = ('-contended' if busy.n else '') + ('-quick' if q else '') + (f'-only-{"-".join(g for g in GROUPS if g in groups)}' if a.only else '')
    out = Path(a.out or Path(__file__).parent/f'results-{dev.type}{suffix}.md')
    out.write_text('\n'.join(lines)+'\n')
    print(f'\nwritten to {out}', file=sys.stderr)

if __name__=='__main__': main()
