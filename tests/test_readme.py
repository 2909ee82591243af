"""The README's code runs as written: its Python blocks, concatenated in order, run as one script in a fresh process (the
distributed block included: run as a plain script, `distrib_ctx` does nothing). Its shell blocks are checked elsewhere:
the install commands by CI, `mixup-cb compare` by tests/test_compare.py."""
import os, re, subprocess, sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent/'README.md'

def python_blocks(text:str)->list:
    return re.findall(r'^```python\n(.*?)^```', text, flags=re.M|re.S)

def test_readme_python_runs(tmp_path):
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 5, blocks  # the one-liner, fit(cbs=), the plain loop, the functional API, distributed training
    script = tmp_path/'readme.py'
    script.write_text('\n\n'.join(blocks) + "\nprint('README ran')\n")
    env = {**os.environ, 'MPLBACKEND': 'Agg', 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0 and 'README ran' in r.stdout, r.stderr[-6000:]
    # the README's fit(cbs=...) example: the learner's own callback stands aside for that fit, and says so
    assert 'MixUpCallback(alpha=0.4) stands aside' in r.stderr, r.stderr[-3000:]
