"""Data for both profiles: procedurally generated verifiable tasks and a programmatic teacher (tiny),
curation steps shared by both profiles, and the full profile's pinned dataset sources.

Submodules are imported on demand (``from falcon_h1r_lib.data import tasks``) so that importing one
stage never pulls in another's dependencies.
"""
