"""`compare` at scale: every finished run kept through a real `kill -9` and `--resume`d, `--jobs 2` processes, and a local Ray instance;
each gives the table of one uninterrupted run in this process (all but the seconds a run took)"""
import json, os, signal, subprocess, sys, time
import pandas as pd, pytest
from mixup_cb.compare.cli import main
from test_compare import make_csv

ARGS = ['--target', 'y', '--alphas', '0', '1', '--seeds', '1', '--epochs', '12']   # 2 runs of about a second on the 120-row CSV

def table(out): return pd.read_csv(out/'results.csv').drop(columns='seconds')

@pytest.fixture(scope='module')
def ref(tmp_path_factory):
    "The CSV and the table of an uninterrupted, sequential comparison of it"
    d = tmp_path_factory.mktemp('grid')
    data = make_csv(d/'t.csv')
    main(['compare', str(data), *ARGS, '--out', str(d/'ref')])
    return data, table(d/'ref')

def runs_in(out): return sorted(f.name for f in (out/'runs').glob('*.pt'))

def test_kill_9_then_resume(ref, tmp_path, capsys):
    data, want = ref
    out = tmp_path/'out'
    p = subprocess.Popen([sys.executable, '-m', 'mixup_cb', 'compare', str(data), *ARGS, '--out', str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t0 = time.time()
    while not (out/'results.json').exists():   # written after the first run, before the second starts training
        assert p.poll() is None and time.time()-t0 < 120, p.stdout.read() if p.poll() is not None else 'no run finished in 120 s'
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL); p.wait()
    assert p.returncode == -signal.SIGKILL
    assert runs_in(out) == ['none-0-seed0.pt'], runs_in(out)   # killed in the middle of the second run
    kept = (out/'runs'/'none-0-seed0.pt').stat()
    js = json.loads((out/'results.json').read_text())      # written whole (atomically): never half a file
    assert js['partial'] is True and [r['alpha'] for r in js['runs']] == [0.]
    # other settings: refused, nothing trained or written
    with pytest.raises(SystemExit) as e: main(['compare', str(data), *ARGS[:-1], '13', '--out', str(out), '--resume'])
    assert e.value.code == 2 and "holds runs trained with other settings (epochs: 12 there, 13 now)" in capsys.readouterr().err
    assert runs_in(out) == ['none-0-seed0.pt']
    main(['compare', str(data), *ARGS, '--out', str(out), '--resume'])
    printed = capsys.readouterr().out
    assert 'resuming: 1 of 2 runs already in' in printed and ', 1 to train' in printed
    assert 'no MixUp seed 0:' not in printed and 'alpha 1 seed 0:' in printed   # only the missing run trained
    assert (out/'runs'/'none-0-seed0.pt').stat().st_mtime_ns == kept.st_mtime_ns   # the finished run was not retrained
    assert json.loads((out/'results.json').read_text())['partial'] is False
    pd.testing.assert_frame_equal(table(out), want)

def test_jobs(ref, tmp_path, capsys):
    data, want = ref
    main(['compare', str(data), *ARGS, '--out', str(tmp_path), '--jobs', '2'])
    printed = capsys.readouterr().out
    assert '2 runs, 2 at once in processes of this machine, 1 thread each' in printed
    workers = {l.rsplit('[', 1)[1] for l in printed.splitlines() if ' seed 0: ' in l}
    assert len(workers) == 2 and str(os.getpid()) not in ' '.join(workers), printed   # one line per run, each from its own process
    pd.testing.assert_frame_equal(table(tmp_path), want)

def test_ray(ref, tmp_path, capsys):
    "On a local Ray instance that this test starts and stops"
    ray = pytest.importorskip('ray')   # in the `dev` extra, so CI runs it
    data, want = ref
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level='ERROR')
    try: main(['compare', str(data), *ARGS, '--out', str(tmp_path), '--ray'])
    finally: ray.shutdown()
    printed = capsys.readouterr().out
    assert '2 runs, as tasks on Ray' in printed and sum(' seed 0: ' in l and l.endswith(']') for l in printed.splitlines()) == 2
    pd.testing.assert_frame_equal(table(tmp_path), want)

def test_ray_missing(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, 'ray', None)   # what `import ray` meets where it is not installed
    with pytest.raises(SystemExit) as e: main(['compare', '--quick', '--ray', '--out', str(tmp_path)])
    assert e.value.code == 1 and capsys.readouterr().err.strip() == "mixup-cb compare --ray needs ray: pip install 'mixup_cb[ray]'"
    assert not (tmp_path/'results.csv').exists()
