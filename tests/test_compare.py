"`mixup-cb compare` end to end, in quick mode, on the bundled digits, a generated image folder and a generated CSV"
import json, re, subprocess, sys
import numpy as np, pandas as pd, pytest
from PIL import Image
from mixup_cb.compare.cli import main
from mixup_cb.compare.data import load_data
from mixup_cb.compare.runs import make_learner
from mixup_cb.show import CELL_PX, TITLE_PX
from mixup_cb.compare.plots import LAMS_PX, CURVES_PX, RELI_PX

from mixup_cb.test_utils import make_shapes

def make_csv(fn, n=120):
    rng = np.random.default_rng(0)
    x, c = rng.normal(size=n), rng.choice(['u', 'v'], n)
    pd.DataFrame(dict(x=x, z=rng.normal(size=n), c=c, y=np.where((x>0)^(c=='u'), 'pos', 'neg'))).to_csv(fn, index=False)
    return fn

def read_out(out):
    return pd.read_csv(out/'results.csv'), json.loads((out/'results.json').read_text())

def check_table(tab, js, alphas, noisy=False):
    "The CSV and JSON tables agree with each other and with the runs they summarize"
    assert tab.alpha.tolist() == alphas
    assert tab.runs.tolist() == [1]*len(alphas)
    for row, jrow in zip(tab.to_dict('records'), js['table']):
        for k in ('final_acc', 'best_acc', 'valid_loss', 'nll', 'ece', 'seconds'): assert row[k] == pytest.approx(jrow[k], rel=1e-4)
    for row in js['table']:
        run = [r for r in js['runs'] if r['alpha']==row['alpha']][0]
        assert row['final_acc'] == pytest.approx(run['valid_acc'][-1], abs=1e-6)
        assert row['best_acc'] == pytest.approx(max(run['valid_acc']), abs=1e-6)
        assert row['valid_loss'] == pytest.approx(run['valid_loss'][-1], abs=1e-6)
        assert row['final_acc_std'] == 0 and 0 <= row['final_acc'] <= 1 and row['seconds'] > 0
        assert (row.get('train_acc_noisy') is not None) == noisy
    for r in js['runs']: assert (r['n_lams'] > 0) == (r['alpha'] > 0)

def png_size(fn): 
    with Image.open(fn) as im: im.load(); return im.size

def test_default_quick(tmp_path, capsys):
    out = tmp_path/'out'
    main(['compare', '--quick', '--out', str(out)])
    tab, js = read_out(out)
    check_table(tab, js, [0., 0.4])
    assert js['settings']['kind'] == 'digits'
    assert (js['settings']['epochs'], js['settings']['seeds'], js['settings']['alphas']) == (1, 1, [0., 0.4])
    assert [r['n_lams'] for r in js['runs']] == [0, 22*64]   # 1438 training digits: 22 full batches of 64, every sample mixed
    assert tab.final_acc.min() > 0.5   # one epoch on the digits is far above the 10% of chance
    w,h = png_size(out/'mixup_batch.png'); assert w == 3*CELL_PX[0] and h-3*CELL_PX[1] in range(TITLE_PX, TITLE_PX+61, 15)  # a grid of 9, a title band of 2-6 lines
    assert png_size(out/'lambdas.png') == LAMS_PX          # one panel: alpha 0 draws no lambdas
    assert png_size(out/'accuracy.png') == CURVES_PX
    printed = capsys.readouterr().out
    assert png_size(out/'reliability.png') == (2*RELI_PX[0], RELI_PX[1])
    assert re.search(r'^method\s+alpha\s+final acc\s+best acc\s+NLL\s+ECE\s+s/run$', printed, re.M)
    assert re.search(r'^none\s+0\s+0\.\d{4} ± 0\.0000', printed, re.M)
    assert re.search(r'^mixup\s+0\.4\s+[+-]0\.\d{4} \[[+-]0\.\d{4}, [+-]0\.\d{4}\]', printed, re.M)   # the difference and its interval
    assert 'bootstrap over 359 validation examples (one seed)' in printed
    assert printed.startswith('bundled digits (scikit-learn): 1438 training')

def test_image_folder(tmp_path):
    data, out = make_shapes(tmp_path/'shapes'), tmp_path/'out'
    main(['compare', str(data), '--quick', '--alphas', '0', '1', '--noise', '0.2', '--out', str(out)])
    tab, js = read_out(out)
    check_table(tab, js, [0., 1.], noisy=True)
    assert js['settings']['kind'] == 'images' and js['settings']['size'] == 32
    w,h = png_size(out/'mixup_batch.png'); assert w == 3*CELL_PX[0] and h-3*CELL_PX[1] in range(TITLE_PX, TITLE_PX+61, 15)  # a grid of 9, a title band of 2-6 lines
    assert png_size(out/'lambdas.png') == LAMS_PX and png_size(out/'accuracy.png') == CURVES_PX

def test_image_folder_train_valid(tmp_path):
    "train/ and valid/ folders are the split, as `ImageDataLoaders.from_folder` reads them"
    make_shapes(tmp_path/'train', n=6); make_shapes(tmp_path/'valid', n=2)
    dls, kind = load_data(tmp_path, size=16)
    assert kind == 'images' and len(dls.train_ds) == 18 and len(dls.valid_ds) == 6
    assert all('/valid/' in str(o[0]) for o in dls.valid_ds.items)

def test_show_mixup_on_images(tmp_path):
    "The picture's titles are the mixed labels of the batch, in the folder's class names, adding up to 100%"
    dls, kind = load_data(make_shapes(tmp_path/'shapes'), size=16)
    learn = make_learner(dls, kind).mixup(alpha=1.)
    fig = learn.show_mixup(n=6)
    titles = [a.get_title() for a in fig.axes if a.get_title()]
    assert len(titles) == 6
    pat = re.compile(r'^(\d+)% (red|green|blue)(?: / (\d+)% (red|green|blue))?$')
    for t in titles:
        m = pat.match(t); assert m, t
        assert int(m[1]) + int(m[3] or 0) == 100 and int(m[1]) >= 50
    assert learn.loss_func.__class__.__name__ == 'CrossEntropyLossFlat'   # the learner is left as it was

def test_csv(tmp_path):
    data, out = make_csv(tmp_path/'t.csv'), tmp_path/'out'
    main(['compare', str(data), '--target', 'y', '--quick', '--out', str(out)])
    tab, js = read_out(out)
    check_table(tab, js, [0., 0.4])
    assert js['settings']['kind'] == 'tabular' and js['settings']['target'] == 'y'
    rows = pd.read_csv(out/'mixup_rows.csv')
    assert list(rows.columns) == ['c', 'x', 'z', 'label', 'lam'] and len(rows) == 8   # 9 asked, a batch of 8 (96 training rows)
    assert set(rows.c) <= {'u', 'v'} and rows.lam.between(0.5, 1).all()
    assert rows.label.str.fullmatch(r'100% (pos|neg)|\d+% (pos|neg) / \d+% (pos|neg)').all()
    assert not (out/'mixup_batch.png').exists()

def _bad_data(tmp_path):
    (tmp_path/'empty').mkdir()
    (tmp_path/'one'/'cats').mkdir(parents=True)
    for i in range(3): Image.new('RGB', (8, 8)).save(tmp_path/'one'/'cats'/f'{i}.png')
    make_csv(tmp_path/'t.csv')

BAD = [
    (['{t}/missing'], 'no such file or folder'),
    (['{t}/empty'], 'no image files found'),
    (['{t}/one'], "all of one class ('cats')"),
    (['{t}/t.csv', '--target', 'nope'], "no column 'nope' to use as --target; its columns are: x, z, c, y"),
    (['{t}/t.csv'], 'a CSV needs --target COLUMN'),
    (['--alphas', '0', '-0.4'], 'alphas must be numbers >= 0'),
    (['--alphas', 'nan'], 'alphas must be numbers >= 0'),
    (['--noise', '1.5'], '--noise must be a fraction in [0, 1)'),
    (['--epochs', '0'], '--epochs must be a whole number >= 1'),
    (['--alphas', 'x'], "invalid float value: 'x'"),
]

@pytest.mark.parametrize('args,msg', BAD, ids=[m for _,m in BAD])
def test_bad_input(tmp_path, capsys, args, msg):
    _bad_data(tmp_path)
    with pytest.raises(SystemExit) as e: main(['compare', *[a.format(t=tmp_path) for a in args], '--out', str(tmp_path/'out')])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert 'mixup-cb compare: error:' in err and msg in err and 'Traceback' not in err
    assert not (tmp_path/'out'/'results.csv').exists()

def test_python_m(tmp_path):
    "`python -m mixup_cb` is the same command"
    r = subprocess.run([sys.executable, '-m', 'mixup_cb', 'compare', '--alphas', '-1'], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and 'mixup-cb compare: error: alpha -1.0: alphas must be numbers >= 0' in r.stderr, r.stderr
    assert 'Traceback' not in r.stderr and 'usage: mixup-cb compare [-h]' in r.stderr

# Without the `compare` extra: one sentence and exit status 1, no traceback. fastai 2.8 itself imports matplotlib and
# scikit-learn, so the subprocess hides each one only after importing mixup_cb.compare (and fastai with it).
MISSING = "mixup-cb compare needs scikit-learn and matplotlib: pip install 'mixup_cb[compare]'"

@pytest.mark.parametrize('mod', ['matplotlib', 'sklearn'])
def test_missing_extra(tmp_path, mod):
    out = tmp_path/'out'
    code = f"import sys, mixup_cb.compare.app; from mixup_cb.compare.cli import main; sys.modules[{mod!r}] = None; main(['compare', '--quick', '--out', {str(out)!r}])"
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and r.stderr.strip() == MISSING, r.stderr[-2000:]
    assert not out.exists()

def test_missing_extra_names_pyproject():
    "The sentence names what the `compare` and `ray` extras of pyproject.toml install"
    from packaging.requirements import Requirement
    from mixup_cb.compare.data import EXTRAS
    from test_release import PROJ
    for extra in ('compare', 'ray'):
        assert {Requirement(r).name for r in PROJ['optional-dependencies'][extra]} == set(EXTRAS[extra].values()), extra
