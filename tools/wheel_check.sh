#!/usr/bin/env bash
# Release check: build the sdist and the wheel, check their metadata, install the wheel (not editable) in a fresh
# venv and use it from a folder outside the repository, as a user would.
#
#   bash tools/wheel_check.sh            # `mixup-cb compare --quick` (a smoke run, ~20 s on 2 CPUs)
#   COMPARE_ARGS= bash tools/wheel_check.sh   # the full main job, `mixup-cb compare`
#
# The venv sees the current environment's packages (--system-site-packages) and the wheel goes in with --no-deps,
# so torch and fastai are not downloaded again; the script then checks that every requirement the wheel declares,
# with its `compare` extra (scikit-learn, matplotlib: what `mixup-cb compare` needs), is met there, and that
# `mixup_cb` is imported from the venv's copy, not from the repository.
# Needs `build` and `twine` (both in the dev extra). Leaves dist/ in the repository with the two files it built.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python}
COMPARE_ARGS=${COMPARE_ARGS---quick}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/mixup_cb-wheel.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

echo "== build: sdist, then the wheel from the sdist"
rm -rf "$ROOT/dist"
"$PY" -m build --outdir "$ROOT/dist" "$ROOT" >"$TMP/build.log" 2>&1 || { tail -40 "$TMP/build.log"; exit 1; }
ls "$ROOT"/dist
whl=$(ls "$ROOT"/dist/*.whl); sdist=$(ls "$ROOT"/dist/*.tar.gz)

echo "== metadata: twine check --strict (the README must render as the long description)"
"$PY" -m twine check --strict "$whl" "$sdist"
"$PY" - "$whl" <<'EOF'
import sys, zipfile, email
z = zipfile.ZipFile(sys.argv[1])
meta = email.message_from_bytes(z.read(next(n for n in z.namelist() if n.endswith('.dist-info/METADATA'))))
bad = [f"{k}: {v}" for k,v in meta.items() if k in ('Author-email','Project-URL','Home-page','Author')
       and any(s in v for s in ('.example', 'github.io'))]
assert not bad, f"placeholder author or unbuilt site in the metadata: {bad}"
assert meta['Description-Content-Type'] == 'text/markdown', meta['Description-Content-Type']
files = z.namelist()
for need in ('mixup_cb/all.py', 'mixup_cb/_modidx.py', *(f'mixup_cb/compare/{m}.py' for m in
             ('__init__', 'data', 'runs', 'stats', 'plots', 'report', 'grid', 'app', 'cli'))):
    assert need in files, f"{need} missing from the wheel"
assert {'compare', 'ray'} <= set(meta.get_all('Provides-Extra') or []), f"no `compare` or `ray` extra: {meta.get_all('Provides-Extra')}"
assert not [n for n in files if n.startswith(('nbs/', 'tests/'))], "notebooks or tests packed into the wheel"
print("metadata ok:", meta['Name'], meta['Version'], '| requires-python', meta['Requires-Python'], '|',
      '; '.join(meta.get_all('Requires-Dist') or []))
EOF

echo "== install the wheel in a fresh venv (not editable) and run it from $TMP/elsewhere"
"$PY" -m venv --system-site-packages "$TMP/venv"
"$TMP/venv/bin/python" -m pip install -q --no-deps "$whl"
mkdir -p "$TMP/elsewhere" && cd "$TMP/elsewhere"
export MPLBACKEND=Agg
"$TMP/venv/bin/python" - "$TMP/venv" <<'EOF'
import sys, importlib.metadata as md
from packaging.requirements import Requirement
from mixup_cb.all import *
import mixup_cb
venv = sys.argv[1]
assert mixup_cb.__file__.startswith(venv), f"mixup_cb imported from {mixup_cb.__file__}, not from the installed wheel"
assert mixup_cb.__version__ == md.version('mixup_cb'), (mixup_cb.__version__, md.version('mixup_cb'))
missing = []
for r in map(Requirement, md.requires('mixup_cb')):  # the base requirements and the `compare` extra's
    if r.marker and not any(r.marker.evaluate({'extra': e}) for e in ('', 'compare')): continue
    try: v = md.version(r.name)
    except md.PackageNotFoundError: v = None
    if v is None or not r.specifier.contains(v, prereleases=True): missing.append(f"{r} (have {v})")
assert not missing, f"requirements not met: {missing}"
from fastai.learner import Learner
assert callable(MixUpCallback) and hasattr(Learner, 'mixup'), "from mixup_cb.all import * gave no MixUpCallback/Learner.mixup"
print("import ok:", mixup_cb.__file__, mixup_cb.__version__)
EOF
ver=$("$TMP/venv/bin/python" -c "import importlib.metadata as m; print(m.version('mixup_cb'))")
got=$("$TMP/venv/bin/mixup-cb" --version)
[ "$got" = "mixup-cb $ver" ] || { echo "mixup-cb --version printed '$got', expected 'mixup-cb $ver'"; exit 1; }
echo "version ok: $got (== mixup_cb.__version__ == the wheel's metadata)"
"$TMP/venv/bin/mixup-cb" compare $COMPARE_ARGS --out "$TMP/out" | tail -15
test -s "$TMP/out/results.csv" || { echo "mixup-cb compare wrote no results.csv"; ls -la "$TMP/out"; exit 1; }
echo "== wheel ok: $(basename "$whl")"
