"""What a run leaves behind and how it is read: the ``journal`` (every event, appended), the
``reporting`` model (report.json and the summary), ``html`` (report.html), ``progress`` (the live
view), ``diagnose`` (the engine over an existing run's logs) and ``explain``. Pure: no torch, no
ray."""
