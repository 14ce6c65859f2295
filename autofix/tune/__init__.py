"""Running on Ray: ``runner`` (``autofix run``: checks, the run directory, the Tune loop),
``controller`` (the Tune searcher that relaunches patched trials), ``trial`` (what runs inside a
trial: the managed harness or a custom trainable), ``resume``, ``preflight`` (factories built
once before Ray starts), ``rundir`` (locking, safe ``--overwrite``), ``raysession`` and
``interrupt``. The only layer that imports ray.tune."""
