"""`mixup-cb compare`, the app on top of the library: `data` (the request and the data), `runs` (one run), `stats` (intervals),
`plots`, `report` (the table and files), `grid` (the runs to do: resumed, in processes, on Ray), `app` (`compare`), `cli`.
Written by hand, not exported: `compare` is loaded on first use, so that `mixup_cb.compare.cli` answers `--help` before torch loads."""

__all__ = ['compare']

def __getattr__(name):
    if name=='compare':
        from .app import compare
        return compare
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
