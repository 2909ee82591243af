"""Release bookkeeping, in seconds: one version everywhere, a CHANGELOG entry for it, and pins that equal the floor
row `tools/compat.sh` tests. (Building and installing the wheel is `tools/wheel_check.sh`, run by `.ci/run`.)"""
import re, subprocess, sys, importlib.metadata as md
try: import tomllib
except ImportError: import tomli as tomllib  # Python 3.10 (nbdev requires tomli there)
from pathlib import Path
import pytest, mixup_cb
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
PROJ = tomllib.loads((ROOT/'pyproject.toml').read_text())['project']

def test_version_agrees_with_metadata():
    # the installed metadata is written at install time: after a version bump, reinstall (`pip install -e .`)
    assert mixup_cb.__version__ == md.version('mixup_cb')

def test_cli_version():
    r = subprocess.run([sys.executable, '-m', 'mixup_cb', '--version'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == f'mixup-cb {mixup_cb.__version__}'

def test_changelog_names_this_version():
    heads = re.findall(r'^## (\S+)', (ROOT/'CHANGELOG.md').read_text(), re.M)
    assert heads and heads[0] == mixup_cb.__version__, f"CHANGELOG.md's newest entry is {heads[:1]}, the version {mixup_cb.__version__}"

def _floor_row():
    table = re.search(r'^TABLE="\n(.*?)^"', (ROOT/'tools'/'compat.sh').read_text(), re.M|re.S).group(1)
    rows = {r.split()[0]: r.split()[1:] for r in table.splitlines() if r.strip()}
    py, fastai, fastcore, torch, _tv = rows['floor']
    return dict(python=py, fastai=fastai, fastcore=fastcore, torch=torch)

def _lower(spec):
    los = [s.version for s in spec if s.operator == '>=']
    assert len(los) == 1, f"expected one >= bound in {spec}"
    return los[0]

def _prefix(tested, pin):  # pin 2.4 is met by a tested 2.4.1 only if the tested version starts with it
    return tested.split('.')[:len(pin.split('.'))] == pin.split('.')

def test_pins_equal_the_tested_floor():
    floor = _floor_row()
    reqs = {Requirement(r).name: Requirement(r).specifier for r in PROJ['dependencies']}
    assert _lower(Requirement('python' + PROJ['requires-python']).specifier) == floor['python']
    for pkg in ('fastai', 'fastcore', 'torch'):
        assert _prefix(floor[pkg], _lower(reqs[pkg])), f"{pkg}: pyproject says {reqs[pkg]}, compat.sh's floor row tests {floor[pkg]}"

def test_no_placeholder_metadata():
    emails = [a.get('email', '') for a in PROJ.get('authors', [])]
    assert not [e for e in emails if e.endswith('.example') or 'noreply' in e], emails

def test_compare_extra():
    "scikit-learn and matplotlib serve `mixup-cb compare`, not the callback: the `compare` extra, which `dev` pulls in"
    deps, extras = {Requirement(r).name for r in PROJ['dependencies']}, PROJ['optional-dependencies']
    compare = {Requirement(r).name for r in extras['compare']}
    assert compare == {'scikit-learn', 'matplotlib'} and not compare & deps, (compare, deps)
    assert any(r.name == 'mixup_cb' and 'compare' in r.extras for r in map(Requirement, extras['dev'])), extras['dev']

def test_ray_extra():
    "Ray serves `mixup-cb compare --ray` only: an extra of its own, which `dev` pulls in so that CI runs the Ray test"
    extras = PROJ['optional-dependencies']
    assert {Requirement(r).name for r in extras['ray']} == {'ray'} and 'ray' not in {Requirement(r).name for r in PROJ['dependencies']}
    assert any(r.name == 'mixup_cb' and 'ray' in r.extras for r in map(Requirement, extras['dev'])), extras['dev']
    assert PROJ['scripts']['mixup-cb'] == 'mixup_cb.compare.cli:main'
