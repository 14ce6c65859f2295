"""How a run is judged from its reports: the metric ``history`` detectors read, the health
``verdict`` (loss fell, not at chance) and what a trainable must report to be judged
(``judging``; the scores a custom loop reports are computed by ``autofix.harness.scoring``). Pure:
no torch, no ray."""
