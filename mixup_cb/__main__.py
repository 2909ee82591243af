"`python -m mixup_cb compare ...` runs the `mixup-cb` command"
from mixup_cb.compare.cli import main
if __name__=='__main__': main()
