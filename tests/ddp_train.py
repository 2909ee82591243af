"""Train the digits with MixUp under fastai's `distrib_ctx` (DDP) on CPU; each rank writes what it mixed to `out/rank{r}.pt`.

Launched by tests/test_distributed.py:
    OMP_NUM_THREADS=1 torchrun --nproc_per_node 2 tests/ddp_train.py OUT_DIR [--same-seed]
"""
import sys, torch, torch.distributed as dist
from pathlib import Path
from fastai.basics import Learner, Callback, set_seed, rank_distrib, num_distrib
import fastai.callback.progress  # Learner.no_bar
from fastai.distributed import DistributedDL, DistributedTrainer
from mixup_cb.all import *
from mixup_cb.examples import digits_dls, small_cnn

def _broadcast_cpu(self, t, rank):
    "fastai 2.8's `DistributedDL._broadcast` calls `.cuda()`; gloo broadcasts CPU tensors"
    t = torch.tensor(t, dtype=torch.long)
    dist.broadcast(t, rank)
    return t.tolist()
DistributedDL._broadcast = _broadcast_cpu

class RecordRaw(Callback):
    "The batch as the DataLoader gave it, before MixUp (order 100) mixes it"
    order = 90
    def __init__(self): self.raw = []
    def before_batch(self):
        if self.training: self.raw.append(self.xb[0].clone())

class RecordMix(Callback):
    "After MixUp: the mixed batch, its shuffle and lambdas, and the loss the learner is about to call"
    order = 110
    def __init__(self): self.mixed,self.perm,self.lam,self.lf = [],[],[],[]
    def after_pred(self):
        if not self.training: return
        mu = self.learn.mix_up
        self.mixed.append(self.xb[0].clone())
        self.perm.append(mu.perm.clone()); self.lam.append(mu.lam.clone())
    def after_loss(self):
        # MixUp swaps its loss in only for the loss call: check the loss is the mixed loss of the recorded draws
        if not self.training: return
        mu = self.learn.mix_up
        want = mixed_loss(self.learn.loss_func, self.learn.pred, self.learn.yb, mu.perm, mu.lam)
        self.lf.append('MixUpLoss' if torch.allclose(self.learn.loss.float(), want.float(), rtol=1e-4, atol=1e-6) else 'other')

def main(out:Path, same_seed:bool):
    rank = rank_distrib()
    # The documented recipe: a seed per rank, so that the ranks draw different shuffles and lambdas
    set_seed(42 if same_seed else 42+rank)
    dls = digits_dls(bs=32, device='cpu', num_workers=0, drop_last=False)  # 719 per rank: a ragged last batch of 15
    raw, rec = RecordRaw(), RecordMix()
    learn = Learner(dls, small_cnn(), cbs=[raw, rec]).mixup(alpha=1.)
    orig = learn.loss_func
    shard, get_idxs, train_dl = [], DistributedDL.get_idxs, dls.train
    def record_idxs(self):
        "The training indices this rank reads: its shard of rank 0's shuffle"
        idxs = get_idxs(self)
        if self.dl is train_dl: shard.append(idxs)
        return idxs
    DistributedDL.get_idxs = record_idxs
    # sync_bn=False: SyncBatchNorm needs a GPU; cpu=True: accelerate takes the torchrun ranks on CPU (gloo)
    with learn.distrib_ctx(sync_bn=False, cpu=True):
        in_ctx = dict(world=num_distrib(), ddp=any(isinstance(c, DistributedTrainer) for c in learn.cbs),
                      backend=dist.get_backend() if dist.is_initialized() else None)
        with learn.no_logging(), learn.no_bar(): learn.fit(1, 1e-2)
        finished = len(learn.recorder.values)==1  # the epoch ran to the end, validation included
    done = dict(rank=rank, **in_ctx, finished=finished, lf_is_orig=learn.loss_func is orig,
                lf_type=type(learn.loss_func).__name__, orig_type=type(orig).__name__,
                ddp_left=any(isinstance(c, DistributedTrainer) for c in learn.cbs),
                model_type=type(learn.model).__name__, n_mix_cbs=len([c for c in learn.cbs if isinstance(c, MixCallback)]),
                mix_cb_clean=learn.mix_up.lam is None and learn.mix_up.perm is None,
                valid_loss=float(learn.recorder.values[0][1]) if finished else None)
    torch.save(dict(meta=done, shard=shard[0], raw=raw.raw, mixed=rec.mixed, perm=rec.perm, lam=rec.lam, lf=rec.lf,
                    params=[p.detach().clone() for p in learn.model.parameters()]), out/f'rank{rank}.pt')
    # Leave together and close gloo explicitly: a rank that exits while the other still holds the group (or with
    # gloo's threads alive at interpreter exit) can abort with "terminate called without an active exception"
    if dist.is_initialized(): dist.barrier(); dist.destroy_process_group()

if __name__=='__main__':
    main(Path(sys.argv[1]), '--same-seed' in sys.argv)
