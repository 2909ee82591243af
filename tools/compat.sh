#!/usr/bin/env bash
# Compatibility check: one fresh venv per (Python, fastai, fastcore, torch) combination, the README's test command
# in each, one line per combination.
#
#   tools/compat.sh                 # every row of the table below, at the commit HEAD
#   tools/compat.sh floor newest    # only the rows with these names
#   REF=v0.1.0 tools/compat.sh      # another commit
#
# The code under test is `git archive $REF`, unpacked afresh for each row, so edits in the working tree do not
# change the result. Each row installs it the README's way, `pip install -e ".[dev]"`, with the row's versions
# pinned on the same command line (pip resolves everything else), then runs `python -m pytest -q tests`.
# Venvs are deleted after each row unless KEEP=1. Logs: $WORK/<name>.log (WORK defaults to /tmp/mixup_cb-compat).
# Python X.Y is found as $PYTHON_X_Y, else ~/.pyenv/versions/X.Y.*, else pythonX.Y on PATH.
# Torch comes from PyPI: CUDA builds on Linux, a few GB per row the first time (pip's cache keeps them).
set -uo pipefail

# name      python  fastai  fastcore  torch   torchvision
TABLE="
floor       3.10    2.8.12  2.2.28    2.4.1   0.19.1
between     3.12    2.8.12  2.2.34    2.8.0   0.23.0
newest      3.11    2.8.12  2.2.41    2.14.1  0.29.1
py313       3.13    2.8.12  2.2.41    2.14.1  0.29.1
"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
REF=${REF:-HEAD}
WORK=${WORK:-/tmp/mixup_cb-compat}
TIMEOUT=${TIMEOUT:-3600}
mkdir -p "$WORK"
COMMIT=$(git -C "$ROOT" rev-parse --short "$REF") || exit 2

find_python() {  # $1 = X.Y
  local var="PYTHON_${1/./_}" c
  if [ -n "${!var:-}" ]; then echo "${!var}"; return; fi
  for c in $(ls -d "$HOME"/.pyenv/versions/"$1".*/bin/python 2>/dev/null | sort -V | tail -1) "$(command -v python"$1")"; do
    [ -x "$c" ] && { echo "$c"; return; }
  done
  return 1
}
mmss() { printf '%d:%02d' $(($1/60)) $(($1%60)); }

echo "# mixup_cb $COMMIT, $(date -u +%Y-%m-%d), $(uname -sm), $(nproc) CPUs; command: python -m pytest -q tests"
echo "| name | Python | fastai | fastcore | torch | tests | install | test time |"
echo "|---|---|---|---|---|---|---|---|"
status=0
while read -r name py fastai fastcore torch tv; do
  [ -z "$name" ] && continue
  if [ $# -gt 0 ] && [[ ! " $* " == *" $name "* ]]; then continue; fi
  log="$WORK/$name.log"; venv="$WORK/venv-$name"; src="$WORK/src-$name"
  : >"$log"
  pybin=$(find_python "$py") || { echo "| $name | $py (not found) | $fastai | $fastcore | $torch | not run | | |"; status=1; continue; }
  rm -rf "$venv" "$src"; mkdir -p "$src"
  git -C "$ROOT" archive "$REF" | tar -x -C "$src"
  t0=$(date +%s)
  "$pybin" -m venv "$venv" >>"$log" 2>&1
  ( cd "$src" && nice "$venv/bin/python" -m pip install -q --upgrade pip >>"$log" 2>&1
    nice "$venv/bin/python" -m pip install -e ".[dev]" "fastai==$fastai" "fastcore==$fastcore" "torch==$torch" \
         "torchvision==$tv" >>"$log" 2>&1 )
  irc=$?; t1=$(date +%s)
  vers=$("$venv/bin/python" -c "import sys,fastai,fastcore,torch,nbdev; print(sys.version.split()[0],fastai.__version__,fastcore.__version__,torch.__version__.split('+')[0],nbdev.__version__)" 2>>"$log")
  if [ $irc -ne 0 ] || [ -z "$vers" ]; then
    echo "| $name | $py | $fastai | $fastcore | $torch | install failed (see $log) | $(mmss $((t1-t0))) | |"; status=1
  else
    read -r pyv fav fcv tov nbv <<<"$vers"
    ( cd "$src" && MPLBACKEND=Agg timeout "$TIMEOUT" nice "$venv/bin/python" -m pytest -q -p no:cacheprovider tests >>"$log" 2>&1 )
    trc=$?; t2=$(date +%s)
    summ=$(grep -E '^=*.*[0-9]+ (passed|failed|error)' "$log" | tail -1 | sed -E 's/^=+ //; s/ in [0-9.]+s.*//; s/ =+$//')
    [ $trc -eq 124 ] && summ="timed out after ${TIMEOUT}s; $summ"
    [ $trc -ne 0 ] && status=1
    echo "| $name | $pyv | $fav | $fcv | $tov (nbdev $nbv) | ${summ:-no summary (rc $trc), see $log} | $(mmss $((t1-t0))) | $(mmss $((t2-t1))) |"
  fi
  echo "du of venv: $(du -sh "$venv" 2>/dev/null | cut -f1)" >>"$log"
  [ "${KEEP:-0}" = 1 ] || rm -rf "$venv" "$src"
done <<<"$TABLE"
exit $status
