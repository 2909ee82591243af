"Every notebook in nbs/ runs as a test, through nbdev's own runner, honouring the `tst_flags` of pyproject.toml."
import os, pytest
from pathlib import Path
from nbdev.config import get_config
from nbdev.test import test_nb as run_nb

NBS = Path(__file__).resolve().parent.parent/'nbs'
# Cells flagged with a tst_flag (e.g. `#| slow`) are skipped unless named in MIXUP_CB_TEST_FLAGS ("slow", "all")
_want = os.environ.get('MIXUP_CB_TEST_FLAGS', '').split()

def _skip_flags():
    flags = list(get_config(NBS).tst_flags or [])
    return [] if 'all' in _want else [f for f in flags if f not in _want]

@pytest.mark.parametrize('nb', sorted(NBS.glob('[!_.]*.ipynb')), ids=lambda p: p.stem)
def test_notebook(nb):
    ok, _ = run_nb(nb, skip_flags=_skip_flags())
    assert ok, f"{nb.name} failed: its traceback is printed above"
