"""Every notebook in nbs/ and nbs/guides/ runs as a test, through nbdev's own runner, honouring the `tst_flags` of pyproject.toml.
Each runs in a fresh process, as `nbdev-test` does: notebooks define classes in `__main__` and `@patch` `Learner`,
so running them in one process would let one notebook's definitions leak into the next."""
import os, subprocess, sys, pytest
from pathlib import Path
from nbdev.config import get_config

NBS = Path(__file__).resolve().parent.parent/'nbs'
# Cells flagged with a tst_flag (`#| slow`: real training fits whose claim a quick check also covers) run here, as in CI,
# unless MIXUP_CB_TEST_FLAGS names fewer: `MIXUP_CB_TEST_FLAGS= python -m pytest tests` is the quick pass, like `nbdev-test`
_want = os.environ.get('MIXUP_CB_TEST_FLAGS', 'all').split()

def _skip_flags():
    flags = list(get_config(NBS).tst_flags or [])
    return [] if 'all' in _want else [f for f in flags if f not in _want]

_RUN = "import sys; from nbdev.test import test_nb; ok,_ = test_nb(sys.argv[1], skip_flags=sys.argv[2:]); sys.exit(0 if ok else 1)"

@pytest.mark.parametrize('nb', sorted(NBS.glob('[!_.]*.ipynb')) + sorted(NBS.glob('guides/[!_.]*.ipynb')),
                         ids=lambda p: str(p.relative_to(NBS).with_suffix('')))
def test_notebook(nb):
    r = subprocess.run([sys.executable, '-c', _RUN, str(nb), *_skip_flags()], capture_output=True, text=True, timeout=1200,
                       env={**os.environ, 'MPLBACKEND': 'Agg'})
    assert r.returncode==0, f"{nb.name} failed:\n{r.stderr[-6000:]}"
