"""Symptoms to decisions: ``policy`` files (``when ... for ... then``) with their ``where`` checks
(``policypaths``) and Prometheus-style ``alerts``; the ``engine`` that runs detectors and policies
over each report (``decisions``, ``settle`` against the run left alone, ``ending``, ``lineage``),
the isolation ``ladder`` (``isolation``), the ``ledger`` of local outcomes and ``policytest``
(``promtool test rules`` for policies). Pure: no torch, no ray."""
