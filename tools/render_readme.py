"""Render README.md from nbs/index.ipynb (Quarto, which `nbdev-readme` needs, is not available everywhere).
Markdown cells are copied; code cells become ```python blocks, except cells marked `#| hide`.
  python tools/render_readme.py          # write README.md
  python tools/render_readme.py --check  # fail if README.md differs from what index.ipynb renders"""
import sys
from pathlib import Path
from fastcore.nbio import read_nb

ROOT = Path(__file__).resolve().parent.parent

def render(nb_path=ROOT/'nbs'/'index.ipynb')->str:
    out = []
    for c in read_nb(nb_path).cells:
        src = c.source.strip()
        if not src: continue
        if c.cell_type=='markdown': out.append(src)
        elif c.cell_type=='code':
            lines = src.splitlines()
            if any(l.strip() in ('#| hide', '#|hide') for l in lines): continue
            lines = [l for l in lines if not l.startswith('#|')]
            out.append('```python\n' + '\n'.join(lines) + '\n```')
    return '<!-- Generated from nbs/index.ipynb by tools/render_readme.py: edit the notebook, not this file. -->\n\n' + '\n\n'.join(out) + '\n'

if __name__=='__main__':
    txt, readme = render(), ROOT/'README.md'
    if '--check' in sys.argv:
        if not readme.exists() or readme.read_text()!=txt:
            sys.exit('README.md is out of date with nbs/index.ipynb: run `python tools/render_readme.py` and commit')
        print('README.md matches nbs/index.ipynb')
    else: readme.write_text(txt)
