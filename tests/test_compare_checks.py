"`mixup-cb compare` on awkward real data: calibration, runs that did not learn, malformed tables, bad images, --out, Ctrl-C, logs"
import os, re
import numpy as np, pandas as pd, pytest, torch, warnings
from pathlib import Path
import mixup_cb, mixup_cb.compare.grid as grid
from mixup_cb.compare.cli import main
from mixup_cb.compare.data import load_data, read_table, csv_dls, auto_bs, auto_epochs, CompareError
from mixup_cb.compare.runs import ece, reliability, run_problems, chance_level, pick_threads
from test_compare import make_shapes, make_csv, read_out

def cli(capsys, *argv):
    "Exit code, stdout and stderr of `mixup-cb *argv`"
    try: main(list(map(str, argv))); code = 0
    except SystemExit as e: code = e.code
    o = capsys.readouterr()
    return code, o.out, o.err

# ECE: one implementation, pinned on a hand-computed example and against the definition
def test_ece_by_hand():
    # confidences .9 (right), .9 (wrong), .6 (right), .7 (right); 15 bins of width 1/15:
    # .9 -> bin (0.8667, 0.9333]: acc .5, conf .9, |gap| .4, weight 2/4; .6 -> (0.5333, 0.6]: gap .4, weight 1/4;
    # .7 -> (0.6667, 0.7333]: gap .3, weight 1/4.  ECE = .2 + .1 + .075 = .375
    p = torch.tensor([[.9,.1], [.1,.9], [.6,.4], [.3,.7]], dtype=torch.float64); t = torch.tensor([0, 0, 0, 1])
    assert ece(p, t) == pytest.approx(0.375, abs=1e-12)
    n, conf, acc = reliability(p, t)
    assert n.tolist() == [0]*8 + [1, 0, 1, 0, 0, 2, 0]
    assert conf[13] == pytest.approx(.9) and acc[13] == .5 and acc[8] == 1 and np.isnan(acc[0])
    assert ece(torch.eye(3), torch.arange(3)) == 0                     # sure and right: calibrated
    assert ece(torch.eye(3), torch.tensor([1, 2, 0])) == 1            # sure and always wrong

def test_ece_matches_definition():
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(3*torch.randn(500, 4, generator=g, dtype=torch.float64), 1); t = torch.randint(0, 4, (500,), generator=g)
    conf, pred = p.max(1); total = 0.
    for i in range(15):
        m = (conf > i/15) & (conf <= (i+1)/15)
        if m.any(): total += m.sum().item()/500 * abs((pred[m]==t[m]).double().mean().item() - conf[m].mean().item())
    assert ece(p, t) == pytest.approx(total, abs=1e-9)

# Runs that did not learn
def _run(acc, probs, targs, tl=(1., .5), vl=(1., .5)):
    return dict(alpha=0., seed=0, valid_acc=[acc], train_loss=list(tl), valid_loss=list(vl), nll=.5,
                probs=torch.as_tensor(probs, dtype=torch.float), targs=torch.as_tensor(targs))

def test_run_problems():
    targs = [0]*6 + [1]*4
    ch, cls = chance_level(torch.tensor(targs), ['a', 'b'])
    assert (ch, cls) == (0.6, 'a')
    one = _run(0.6, [[.9, .1]]*10, targs)                         # 'a' for everything: exactly chance
    ps = run_problems(one, ch, ['a', 'b'])
    assert any('at or below chance (0.600)' in p for p in ps) and any("one class ('a')" in p for p in ps)
    assert run_problems(_run(1., [[.9,.1]]*6 + [[.1,.9]]*4, targs), ch) == []
    assert run_problems(_run(1., [[.9,.1]]*6 + [[.1,.9]]*4, targs, tl=(1., float('nan'))), ch) == \
        ['the loss became NaN or infinite: training diverged']
    assert any('did not fall' in p for p in run_problems(_run(1., [[.9,.1]]*6 + [[.1,.9]]*4, targs, tl=(.5, .7)), ch))
    assert 'diverged' in run_problems(_run(1., [[.9,.1]]*6 + [[.1,.9]]*4, targs, vl=(1., 7.)), ch)[0]   # > 10 ln 2

def test_huge_lr_detected(tmp_path, capsys):
    "A deliberately broken setting: lr 1000 on the digits. The table is printed with a warning that says so and what to try"
    code, out, err = cli(capsys, 'compare', '--quick', '--alphas', '0', '--lr', '1000', '--out', tmp_path)
    assert code == 0, err
    assert 'WARNING: 1 of 1 runs did not learn' in out and 'training diverged' in out and 'Try a lower --lr (now 1000, e.g. 100)' in out, out
    tab, js = read_out(tmp_path)
    assert tab.not_learned.tolist() == [1] and js['runs'][0]['problems'] and js['settings']['warning']
    assert 'did not learn' in out.split('WARNING')[0]      # the table's own column

def test_learned_no_warning(tmp_path, capsys):
    code, out, err = cli(capsys, 'compare', '--quick', '--out', tmp_path)
    assert code == 0 and 'WARNING' not in out and "chance, always answering" in out
    assert '\r' not in out and '\r' not in err              # not a terminal: one line per run, no progress-bar redraws
    assert len(re.findall(r'^(no MixUp|alpha [\d.]+) seed \d: final acc 0\.\d{4}, NLL', out, re.M)) == 2
    tab, js = read_out(tmp_path)
    for k in ('nll', 'ece'): assert k in tab.columns and k+'_std' in tab.columns and all(0 <= r[k] for r in js['runs'])
    assert js['table'][0]['nll'] == pytest.approx(js['runs'][0]['valid_loss'][-1], abs=1e-4)  # NLL is the unmixed validation loss
    assert re.search(r'^method\s+alpha\s+final acc\s+best acc\s+NLL\s+ECE\s+s/run$', out, re.M)

# Malformed tables
def test_wine_header_refused(tmp_path, capsys):
    "scikit-learn's raw wine_data.csv: a first line of 5 names over rows of 14 fields"
    import sklearn
    wine = Path(sklearn.__file__).parent/'datasets'/'data'/'wine_data.csv'
    code, out, err = cli(capsys, 'compare', wine, '--target', 'class_0', '--out', tmp_path/'o')
    assert code == 2 and 'Traceback' not in err
    assert 'its first line has 5 names but its rows have 14 fields' in err, err
    assert not (tmp_path/'o').exists()

def test_header_mismatch_any_delimiter(tmp_path):
    for sep, ext in ((',', 'csv'), ('\t', 'tsv'), (';', 'csv'), ('|', 'txt')):
        fn = tmp_path/f'h.{ext}'
        fn.write_text(sep.join('ab') + '\n' + '\n'.join(sep.join(map(str, range(i, i+3))) for i in range(20)))
        with pytest.raises(CompareError, match='first line has 2 names but its rows have 3 fields'): read_table(fn)
    fn = tmp_path/'trailing.csv'; fn.write_text('a,b\n' + ''.join(f'{i},{i+1},\n' for i in range(10)))   # rows end in a delimiter
    df = read_table(fn); assert list(df.columns) == ['a', 'b'] and df.b.tolist() == list(range(1, 11))
    fn.write_text('a,b,c\n' + '\n'.join(f'{i},{i},{i}' for i in range(10)) + '\n1,2,3,4\n')
    with pytest.raises(CompareError, match='cannot be read as a table'): read_table(fn)   # a ragged row: refused, not shifted

def test_wine_with_header(tmp_path, capsys):
    "The same numbers under a proper header: all 13 features are used"
    from sklearn.datasets import load_wine
    w = load_wine(as_frame=True).frame
    w.to_csv(tmp_path/'wine.csv', index=False)
    code, out, err = cli(capsys, 'compare', tmp_path/'wine.csv', '--target', 'target', '--quick', '--out', tmp_path/'o')
    assert code == 0, err
    assert "learning 'target' (3 classes) from 13 other columns: 13 numeric (alcohol, malic_acid" in out
    rows = pd.read_csv(tmp_path/'o'/'mixup_rows.csv')
    assert len(rows.columns) == 13 + 2

@pytest.mark.parametrize('sep,ext', [('\t', 'tsv'), ('\t', 'txt'), (';', 'csv'), (' ', 'txt')])
def test_delimiters(tmp_path, sep, ext):
    df = pd.read_csv(make_csv(tmp_path/'t.csv'))
    fn = tmp_path/f'd.{ext}'; df.to_csv(fn, sep=sep, index=False)
    got = read_table(fn)
    assert list(got.columns) == ['x', 'z', 'c', 'y'] and len(got) == len(df)
    np.testing.assert_allclose(got.x, df.x)
    dls, kind = load_data(fn, target='y')
    assert kind == 'tabular' and dls.cat_names == ['c'] and list(dls.cont_names) == ['x', 'z']

def test_missing_targets_counted(tmp_path, capsys):
    df = pd.read_csv(make_csv(tmp_path/'t.csv')); df.loc[[3, 10, 50], 'y'] = None; df.to_csv(tmp_path/'m.csv', index=False)
    dls = csv_dls(tmp_path/'m.csv', 'y', say=print)
    assert "dropped 3 of 120 rows that have no value in 'y'" in capsys.readouterr().out
    assert len(dls.train_ds) + len(dls.valid_ds) == 117

def test_no_readonly_warning(tmp_path):
    "pandas' copy-on-write arrays are read-only; batches are built from copies, so torch does not warn"
    dls, _ = load_data(make_csv(tmp_path/'t.csv'), target='y')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        b = dls.train.one_batch(); dls.valid.one_batch()
    assert b[1].dtype == torch.float32 and b[2].shape == (len(b[1]), 1)

# Images
def test_corrupt_images_skipped(tmp_path, capsys):
    data = make_shapes(tmp_path/'shapes')
    (data/'red'/'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n not really a png')
    good = (data/'green'/'0.png').read_bytes(); (data/'green'/'cut.png').write_bytes(good[:len(good)//2])
    (data/'blue'/'empty.jpg').write_bytes(b'')
    dls, kind = load_data(data, size=16, say=print)
    msg = capsys.readouterr().out
    assert 'skipped 3 of 27 image files that cannot be read:' in msg
    for n in ('red/broken.png', 'green/cut.png', 'blue/empty.jpg'): assert n in msg
    assert len(dls.train_ds) + len(dls.valid_ds) == 24
    for f in list(data.rglob('*.png')): f.write_bytes(b'junk')
    with pytest.raises(CompareError, match='none of its 27 image files can be read'): load_data(data)

# --out and interruptions
def test_out_is_a_file(tmp_path, capsys):
    (tmp_path/'f').write_text('x')
    code, out, err = cli(capsys, 'compare', '--quick', '--out', tmp_path/'f')
    assert code == 2 and 'mixup-cb compare: error: --out' in err and 'is a file, not a folder' in err and 'Traceback' not in err

@pytest.mark.parametrize('where', ['under_file', 'proc'])
def test_out_not_writable(tmp_path, capsys, where):
    "Root may write almost anywhere; a folder under a regular file, or in /proc, fails for root too"
    (tmp_path/'f').write_text('x')
    out = tmp_path/'f'/'sub' if where=='under_file' else Path('/proc/mixup_cb_test/out')
    code, _, err = cli(capsys, 'compare', '--quick', '--out', out)
    assert code == 2 and 'cannot write there' in err and 'Traceback' not in err, err

def test_ctrl_c_keeps_partial(tmp_path, capsys, monkeypatch):
    "Ctrl-C during the second run: exit 130, and the first run's results written, marked partial"
    from fastai.callback.core import Callback
    class Interrupt(Callback):
        def after_batch(self): raise KeyboardInterrupt
    orig, calls = grid.run_one, []
    def run_one(*args, **kw):
        calls.append(1)
        if len(calls)==2: kw['cbs'] = [Interrupt()]
        return orig(*args, **kw)
    monkeypatch.setattr(grid, 'run_one', run_one)
    code, out, err = cli(capsys, 'compare', '--quick', '--out', tmp_path)
    assert code == 130 and 'interrupted' in err and 'Traceback' not in err
    assert 'INTERRUPTED after 1 of 2 runs' in out and 'marked partial' in out
    tab, js = read_out(tmp_path)
    assert js['partial'] is True and len(js['runs']) == 1 and tab.partial.all() and tab.alpha.tolist() == [0.]

# Defaults from the data, threads, version
def test_auto_sizes():
    assert [auto_bs(n) for n in (10, 80, 144, 160, 500, 800, 1438, 10**6)] == [8, 8, 16, 16, 32, 64, 64, 64]
    assert [auto_epochs(s) for s in (2, 9, 10, 22, 100)] == [40, 17, 15, 10, 10]
    assert 1 <= pick_threads('images') <= max(1, len(os.sched_getaffinity(0))//2) and pick_threads('digits') == 1

def test_version(capsys):
    code, out, _ = cli(capsys, '--version')
    assert code == 0 and out.strip() == f'mixup-cb {mixup_cb.__version__}'

def test_measurement_target_is_regression(tmp_path):
    "scikit-learn's raw iris.csv: a measurement column is a regression target, its class column classes"
    import sklearn
    iris = Path(sklearn.__file__).parent/'datasets'/'data'/'iris.csv'
    dls, kind = load_data(iris, target='setosa')   # petal length: 43 distinct numbers
    assert kind == 'regression' and dls.target_scale[1] > 0 and dls.one_batch()[2].dtype == torch.float32
    dls, kind = load_data(iris, target='virginica')
    assert kind == 'tabular' and list(dls.vocab) == ['0', '1', '2'] and len(dls.cont_names) == 4
    # whole numbers stored as floats (a column with a gap reads as float64) are classes, named as whole numbers
    df = pd.read_csv(make_csv(tmp_path/'t.csv')); df['k'] = np.where(df.y=='pos', 1., 0.); df.loc[5, 'k'] = None
    df.to_csv(tmp_path/'k.csv', index=False)
    assert list(load_data(tmp_path/'k.csv', target='k')[0].vocab) == ['0', '1']
    with pytest.raises(CompareError, match="--noise makes class labels wrong"): load_data(iris, target='setosa', noise=0.2)
