"MixUp under fastai's `distrib_ctx` (DDP via accelerate): two CPU processes on gloo, launched with torchrun."
import os, socket, subprocess, sys, pytest, torch
from pathlib import Path
import torch.distributed as dist
from mixup_cb.mix import mix
from mixup_cb.examples import load_digits_xy, digits_dls

ROOT = Path(__file__).parent.parent
pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason='needs torch.distributed with gloo')

def _free_port()->int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

@pytest.fixture(scope='module')
def ranks(tmp_path_factory):
    "Run tests/ddp_train.py on 2 CPU ranks once; what each rank recorded"
    out = tmp_path_factory.mktemp('ddp')
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', 'CUDA_VISIBLE_DEVICES': '',
           'PYTHONPATH': os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')])}
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
           '--master_addr', '127.0.0.1', '--master_port', str(_free_port()), str(ROOT/'tests'/'ddp_train.py'), str(out)]
    try: r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=150)
    except subprocess.TimeoutExpired as e: pytest.fail(f"DDP run did not finish in 150 s:\n{(e.stderr or '')[-3000:]}")
    assert r.returncode==0, f"DDP run failed (rc {r.returncode}):\n{r.stderr[-4000:]}"
    return [torch.load(out/f'rank{i}.pt', weights_only=False) for i in range(2)]

def test_both_ranks_finished_and_restored(ranks):
    for i,d in enumerate(ranks):
        m = d['meta']
        assert m['rank']==i and m['world']==2 and m['backend']=='gloo' and m['ddp'], m
        assert m['finished'] and m['lf_is_orig'] and m['lf_type']==m['orig_type']=='CrossEntropyLossFlat', m
        assert torch.isfinite(torch.tensor(m['valid_loss']))
        assert not m['ddp_left'] and m['model_type']=='Sequential', m  # DDP wrapper and its callback gone
        assert m['n_mix_cbs']==1 and m['mix_cb_clean'], m
        assert set(d['lf'])=={'MixUpLoss'}  # every training batch was scored by the mixed loss

def test_each_rank_reads_its_own_shard(ranks):
    s0,s1 = ranks[0]['shard'],ranks[1]['shard']
    n = len(digits_dls(bs=32).train.dataset)
    assert len(s0)==len(s1)==n//2 and not set(s0)&set(s1) and set(s0)|set(s1)==set(range(n))

def test_each_rank_mixed_its_own_batches(ranks):
    x,_ = load_digits_xy()
    items = digits_dls(bs=32).train.dataset.items
    for d in ranks:
        shard = d['shard']
        assert [len(o) for o in d['raw']]==[32]*22+[15]  # the ragged last batch (719 = 22*32+15) mixed too
        for j,(raw,m,perm,lam) in enumerate(zip(d['raw'], d['mixed'], d['perm'], d['lam'])):
            assert torch.equal(raw, x[[items[i] for i in shard[j*32:(j+1)*32]]])  # this rank's samples
            assert torch.equal(m, mix(raw, perm, lam)) and not torch.equal(m, raw)
    # the ranks drew their own shuffles and lambdas (one seed per rank, as README says)
    for a,b in zip(ranks[0]['lam'], ranks[1]['lam']): assert not torch.allclose(a, b)
    assert not any(torch.equal(a, b) for a,b in zip(ranks[0]['perm'], ranks[1]['perm']))

def test_ddp_kept_the_replicas_equal(ranks):
    "The mixed losses' gradients were all-reduced: both ranks end with the same weights"
    for a,b in zip(ranks[0]['params'], ranks[1]['params']): torch.testing.assert_close(a, b)
