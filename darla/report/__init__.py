"""Reports: read the files the stages wrote, write HTML and JSON.

:mod:`~darla.report.run` (a run's ``report.html`` and ``results.json``), :mod:`~darla.report.sweep`
(a sweep's table and figure), with the pieces they share: :mod:`~darla.report.html`,
:mod:`~darla.report.figures`, :mod:`~darla.report.media`, and the SCAN and ICF sections.
"""
