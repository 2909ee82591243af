"`mixup-cb compare`'s data as new users hit it: image-folder layouts, tiny and headerless CSVs, column numbers, ID-like columns, regression"
import json
import numpy as np, pandas as pd, pytest, torch
from pathlib import Path
from PIL import Image
from mixup_cb.compare.cli import main
from mixup_cb.compare.data import load_data, CompareError, MIN_TRAIN, MIN_VALID, is_measurement, id_like
from mixup_cb.test_utils import make_shapes
from test_compare import make_csv, read_out

def splits(dls):
    "The folders the training and validation images came from"
    top = lambda items: sorted({Path(o[0]).relative_to(dls.path).parts[0] for o in items})
    return top(dls.train_ds.items), top(dls.valid_ds.items)

def test_train_valid_test_classes(tmp_path, capsys):
    "train/ valid/ test/<class>: the labelled test images are not trained on, and --noise 0.4 makes 40% of the training labels wrong"
    for s, n in (('train', 20), ('valid', 4), ('test', 4)): make_shapes(tmp_path/s, n=n)
    dls, _ = load_data(tmp_path, size=16, say=print)
    assert splits(dls) == (['train'], ['valid']) and (len(dls.train_ds), len(dls.valid_ds)) == (60, 12)
    assert 'training on train/ (60); validating on valid/ (12); left out: test/ (12)' in capsys.readouterr().out
    noisy, _ = load_data(tmp_path, size=16, noise=0.4)
    wrong = sum(Path(f).parent.name != y for f, y in noisy.train_ds.items)
    assert wrong == 24   # 40% of 60

def test_unlabelled_test(tmp_path):
    "train/ valid/ test/*.png: no phantom class 'test'"
    make_shapes(tmp_path/'train', n=6); make_shapes(tmp_path/'valid', n=2)
    (tmp_path/'test').mkdir()
    for i in range(5): Image.new('RGB', (16, 16)).save(tmp_path/'test'/f'{i}.png')
    dls, _ = load_data(tmp_path, size=16, noise=0.5)
    assert list(dls.vocab) == ['blue', 'green', 'red'] and splits(dls) == (['train'], ['valid'])

@pytest.mark.parametrize('vname', ['valid', 'val', 'validation'])
def test_validation_names(tmp_path, vname):
    make_shapes(tmp_path/'train', n=6); make_shapes(tmp_path/vname, n=2)
    dls, _ = load_data(tmp_path, size=16)
    assert splits(dls) == (['train'], [vname]) and (len(dls.train_ds), len(dls.valid_ds)) == (18, 6)

def test_train_only(tmp_path, capsys):
    "train/ alone: 20% of it held out"
    make_shapes(tmp_path/'train', n=8)
    dls, _ = load_data(tmp_path, size=16, say=print)
    assert splits(dls) == (['train'], ['train']) and (len(dls.train_ds), len(dls.valid_ds)) == (19, 5)
    assert 'no valid/, val/ or validation/ folder: 20% of the training images held out' in capsys.readouterr().out

def test_output_folder_never_data(tmp_path, capsys):
    "An earlier run's output inside the data folder (the default ./mixup_compare, run from inside it) is not a class"
    make_shapes(tmp_path, n=8)
    old = tmp_path/'mixup_compare'; old.mkdir()
    for f in ('accuracy.png', 'lambdas.png'): Image.new('RGB', (32, 32)).save(old/f)
    (old/'results.json').write_text('{}'); (old/'results.csv').write_text('alpha\n0\n')
    dls, _ = load_data(tmp_path, size=16, say=print)
    assert list(dls.vocab) == ['blue', 'green', 'red'] and len(dls.train_ds) + len(dls.valid_ds) == 24
    assert 'left out 2 images in mixup_compare/: output of mixup-cb compare, not data' in capsys.readouterr().out
    other = tmp_path/'out_here'; other.mkdir(); Image.new('RGB', (32, 32)).save(other/'x.png')   # --out, before it holds results
    dls, _ = load_data(tmp_path, size=16, skip=other)
    assert list(dls.vocab) == ['blue', 'green', 'red']

@pytest.mark.parametrize('n', [2, 3, 19])
def test_tiny_csv(tmp_path, capsys, n):
    "Too few rows: one sentence before any run, giving the minimum"
    make_csv(tmp_path/'t.csv', n=n)
    with pytest.raises(SystemExit) as e: main(['compare', str(tmp_path/'t.csv'), '--target', 'y', '--out', str(tmp_path/'o')])
    err = capsys.readouterr().err
    assert e.value.code == 2 and 'too small to compare' in err and f'at least {MIN_TRAIN} and {MIN_VALID}' in err and 'Traceback' not in err
    assert not (tmp_path/'o'/'results.csv').exists()
    make_csv(tmp_path/'ok.csv', n=MIN_TRAIN+MIN_VALID)
    dls, _ = load_data(tmp_path/'ok.csv', target='y')
    assert (len(dls.train_ds), len(dls.valid_ds)) == (MIN_TRAIN, MIN_VALID)

def test_no_header_and_column_numbers(tmp_path, capsys):
    "scikit-learn's raw wine_data.csv, unedited: --no-header skips its odd first line, and --target takes a column number"
    import sklearn
    wine = Path(sklearn.__file__).parent/'datasets'/'data'/'wine_data.csv'
    dls, kind = load_data(wine, target=-1, header=False, say=print)
    out = capsys.readouterr().out
    assert kind == 'tabular' and list(dls.vocab) == ['0', '1', '2'] and list(dls.cont_names) == [f'c{i}' for i in range(13)]
    assert 'skipped the first line of wine_data.csv: 5 fields where its rows have 14' in out
    assert len(dls.train_ds) + len(dls.valid_ds) == 178
    for t in ('13', 13, 'c13'): assert list(load_data(wine, target=t, header=False)[0].vocab) == ['0', '1', '2']
    with pytest.raises(CompareError, match=r'or give a column number, 0 to 13'): load_data(wine, target='14', header=False)
    with pytest.raises(CompareError, match='pass --no-header'): load_data(wine, target='13')

def test_id_like_columns_left_out(tmp_path, capsys):
    df = pd.read_csv(make_csv(tmp_path/'t.csv'))
    df['name'] = [f'row {i}' for i in range(len(df))]; df['Id'] = np.arange(1, len(df)+1); df['code'] = np.arange(len(df)) % 7
    df.to_csv(tmp_path/'ids.csv', index=False)
    dls, _ = load_data(tmp_path/'ids.csv', target='y', say=print)
    assert dls.cat_names == ['c'] and list(dls.cont_names) == ['x', 'z', 'code']
    assert 'left out 2 ID-like (nearly every value distinct): name, Id' in capsys.readouterr().out
    assert id_like(df.name) and id_like(df.Id) and not id_like(df.code) and not id_like(df.x) and not id_like(df.c)

def test_is_measurement():
    n = 400
    assert is_measurement(pd.Series(np.linspace(0, 1, n)))                     # non-whole, many values
    assert not is_measurement(pd.Series(np.arange(n) % 10 * 0.5))              # few distinct values: classes
    assert not is_measurement(pd.Series(np.arange(n) % 40))                    # whole-number codes, at most max(50, n/4)
    assert is_measurement(pd.Series(np.arange(n) % 150))                       # whole numbers, too many to be classes
    assert not is_measurement(pd.Series(['a', 'b'] * 200)) and not is_measurement(pd.Series([True, False] * 200))

def test_regression_csv(tmp_path, capsys):
    "A numeric target: MSE, the targets mixed (stack_y=False), RMSE and MAE in the target's units, with intervals"
    from sklearn.datasets import load_diabetes
    d = load_diabetes(as_frame=True).frame; d.to_csv(tmp_path/'d.csv', index=False)
    main(['compare', str(tmp_path/'d.csv'), '--target', 'target', '--quick', '--epochs', '2', '--out', str(tmp_path/'o')])
    out = capsys.readouterr().out
    tab, js = read_out(tmp_path/'o')
    assert js['settings']['kind'] == 'regression' and tab.method.tolist() == ['none', 'mixup']
    assert {'rmse', 'mae', 'rmse_diff', 'rmse_lo', 'rmse_hi', 'mae_diff'} <= set(tab.columns) and 'final_acc' not in tab
    assert 20 < tab.rmse.min() and tab.rmse.max() < 200 and (tab.mae < tab.rmse).all()   # the target's units: its std is 77
    assert "always predicting the mean would give RMSE" in out and 'RMSE (lower is better)' in out
    rows = pd.read_csv(tmp_path/'o'/'mixup_rows.csv')
    assert list(rows.columns[-2:]) == ['target', 'lam'] and rows.target.between(d.target.min()-1, d.target.max()+1).all()
    assert js['runs'][1]['n_lams'] > 0 and not (tmp_path/'o'/'reliability.png').exists() and (tmp_path/'o'/'valid_loss.png').exists()

def test_methods_csv_cutmix_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(['compare', str(make_csv(tmp_path/'t.csv')), '--target', 'y', '--methods', 'mixup', 'cutmix', '--out', str(tmp_path/'o')])
    err = capsys.readouterr().err
    assert e.value.code == 2 and '--methods cutmix: CutMix pastes boxes' in err and not (tmp_path/'o'/'results.csv').exists()

def test_methods_digits(tmp_path, capsys):
    "Each method at each alpha against one baseline; the method named in every row of the table, CSV and JSON; one picture per method"
    main(['compare', '--quick', '--methods', 'manifold', 'mixup-or-cutmix', '--alphas', '0', '1', '--out', str(tmp_path)])
    out = capsys.readouterr().out
    tab, js = read_out(tmp_path)
    assert tab.method.tolist() == [r['method'] for r in js['table']] == ['none', 'manifold', 'mixup-or-cutmix']
    assert tab.alpha.tolist() == [0, 1, 1] and js['settings']['methods'] == ['manifold', 'mixup-or-cutmix']
    assert sorted(f.name for f in tmp_path.glob('*_batch.png')) == ['mixup-or-cutmix_batch.png']   # manifold mixes hidden activations: no picture
    assert 'final acc (higher is better):' in out and 'mixup-or-cutmix 1' in out and 'manifold 1' in out
    assert [r['n_lams'] for r in js['runs']] == [0, 22*64, 22*64]
