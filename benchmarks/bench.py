"""What MixUp costs per batch: mixup_cb against fastai v2, timm, torchvision, a naive version and the floors, in one run.

    python benchmarks/bench.py                  # CPU, full run (about 2 minutes on 2 idle CPUs)
    python benchmarks/bench.py --quick          # fewer repeats, for a quick look
    python benchmarks/bench.py --device cuda    # on a GPU (times with torch.cuda.synchronize around each call)
    python benchmarks/bench.py --contention 2   # with 2 busy processes beside it, as DataLoader workers would be
    python benchmarks/bench.py --only paths step  # only some groups: mixing, paths, loss, step

Prints a markdown table and writes it to benchmarks/results-<device>[-contended][-quick][-only-<groups>].md.Every implementation of a row group runs on
the same tensors, interleaved repeat by repeat in a new shuffled order each round (so a busy machine slows all of them
alike, and none always runs right after the same one: on these CPUs the call after a plain cross-entropy ran up to
100 us slower); the table gives the median of the repeats with min and max, and ratios of medians from the same run.
timm and torchvision come from the `bench` extra (`pip install -e ".[bench]"`); a peer that is missing or fails is
reported as such.
"""
from __future__ import annotations
import argparse, os, platform, random, statistics, subprocess, sys, time, warnings
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
warnings.filterwarnings('ignore')
import torch, torch.nn as nn, torch.nn.functional as F
from fastai.basics import Learner, DataLoaders, CrossEntropyLossFlat, L
from fastai.data.load import DataLoader
from fastai.torch_core import TensorImage, TensorCategory
from fastai.callback.mixup import MixUp
from fastai.callback.progress import ProgressCallback
import mixup_cb
from mixup_cb.core import sample_lam, sample_perm
from mixup_cb.mix import mix, Recycler
from mixup_cb.loss import mixed_loss, _generic_mixed_loss
from mixup_cb.callback import MixUpCallback
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

# ---- the CPU speed paths of `mix`: recycled memory (`Recycler`) and mixing a few MB at a time (blocked) -------------
def _w(x, lam): return lam.to(x.dtype).view(-1, *[1]*(x.ndim-1))
def unblocked(x, perm, lam, out): return torch.index_select(x, 0, perm, out=out).lerp_(x, _w(x, lam))
def blocked(x, perm, lam, out, block=3<<20):
    "The path `mix` took on the CPU until these runs: a few MB of samples gathered and lerped at a time (removed: it did not pay)"
    if x.nbytes<=4*block: return unblocked(x, perm, lam, out)
    k,w = max(1, block*len(x)//x.nbytes),_w(x, lam)
    for i in range(0, len(x), k): torch.index_select(x, 0, perm[i:i+k], out=out[i:i+k]).lerp_(x[i:i+k], w[i:i+k])
    return out

PATHS = {  # name: f(x, perm, lam, recycler) -> mixed batch
    'recycled, blocked (the removed path)': lambda x,p,l,rc: blocked(x, p, l, rc.empty_like(x)),
    'recycled, unblocked: mix(out=Recycler) (the callback)': lambda x,p,l,rc: mix(x, p, l, out=rc.empty_like(x)),
    'fresh, blocked': lambda x,p,l,rc: blocked(x, p, l, torch.empty_like(x)),
    'fresh, unblocked: index_select(out=empty_like).lerp_': lambda x,p,l,rc: unblocked(x, p, l, torch.empty_like(x)),
    'plain x[perm].lerp_(x, w): mix(x, perm, lam)': lambda x,p,l,rc: mix(x, p, l),
    'plain torch.lerp(x[perm], x, w)': lambda x,p,l,rc: torch.lerp(x[p], x, _w(x, l)),
}
PLAIN, OURS = 'plain x[perm].lerp_(x, w): mix(x, perm, lam)', 'recycled, unblocked: mix(out=Recycler) (the callback)'

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
           '| batch | blocking, on recycled memory | blocking, on fresh memory | Recycler, unblocked | Recycler, blocked | '
           'index_select vs x[perm] (fresh, unblocked) | the callback\'s mix vs plain x[perm].lerp_ |',
           '|---|---:|---:|---:|---:|---:|---:|']
    for name,res in px.items():
        ru, rb = m(res, OURS), m(res, 'recycled, blocked (the removed path)')
        fu, fb = m(res, 'fresh, unblocked: index_select(out=empty_like).lerp_'), m(res, 'fresh, blocked')
        out.append(f'| {name} | {ru/rb:.2f} | {fu/fb:.2f} | {fu/ru:.2f} | {fb/rb:.2f} | {m(res, PLAIN)/fu:.2f} | {m(res, PLAIN)/ru:.2f} |')
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
           'mixup_cb generic path (two CEs, lerped)': lambda: _generic_mixed_loss(crit, pred, (y,), perm, lam),
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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--device', default='cpu', help="'cpu' or 'cuda' (or 'cuda:1', ...)")
    ap.add_argument('--quick', action='store_true', help='few repeats: a look in well under a minute, not for the README')
    ap.add_argument('--threads', type=int, default=None, help="torch CPU threads (default: torch's own choice)")
    ap.add_argument('--out', default=None, help='markdown file to write (default: benchmarks/results-<device type>[-contended][-quick][-only-...].md)')
    ap.add_argument('--contention', type=int, default=0, metavar='N',
                    help='run N busy background processes for the whole run, as DataLoader workers would compete for the CPUs (default 0)')
    ap.add_argument('--contention-kind', choices=('matmul', 'spin'), default='matmul',
                    help="what each busy process runs: a torch matmul loop at torch's default threads, or a pure-Python spin")
    ap.add_argument('--only', nargs='+', choices=GROUPS, default=None, help=f'run only these groups (default: all of {", ".join(GROUPS)})')
    a = ap.parse_args(argv)
    if a.contention<0: ap.error('--contention must be >= 0')
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
    groups = set(a.only or GROUPS)
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
              '\nrecycled: out= from a `Recycler`; fresh: new memory each call; blocked: the 3 MB blocks `mix` used to take (only for '
              'float32 batches over 12 MB on the CPU; removed, since it did not pay idle or under contention).'])
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
