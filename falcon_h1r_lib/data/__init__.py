"""Data for both profiles: procedurally generated verifiable tasks and a programmatic teacher (tiny),
curation steps shared by both profiles, and the full profile's pinned dataset sources.

``run(cfg)`` runs the stage in process (``build.run``); ``python -m falcon_h1r_lib.data --config FILE`` on a
cluster. Submodules are imported on demand (``from falcon_h1r_lib.data import tasks``) so that importing one
stage never pulls in another's dependencies.
"""


def run(cfg, force: bool = False) -> dict:
    """See ``build.run``: curate the data of ``cfg``'s profile, write it and return the stage's metrics."""
    from falcon_h1r_lib.data.build import run as _run

    return _run(cfg, force=force)
