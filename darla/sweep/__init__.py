"""Sweeps: a grid (and a list) of config overrides × seeds, expanded into ordinary pipeline runs.

Stage 1 is shared. Runs whose stage-1 inputs agree (:func:`vision_key`: the keys that
:data:`darla.stages.READS` gives to stage 1) form one group; each group's vision stage runs
once, in ``<sweep_dir>/vision/<key>/`` (an ordinary, resumable run directory), and its artifacts
are then copied into each run's ``vision/`` with their manifest entries (hashes verified), marked
``reused_from``. Each run directory is therefore self-contained and resumable on its own:
``darla pipeline``/``darla report`` work on it as on any run, and deleting the shared directory
loses nothing. Running the sweep again skips complete runs and continues the rest, each from its
first incomplete stage; ``<sweep_dir>/sweep.json`` records every run's overrides and status.

The package, in the order a sweep goes through it:

- :mod:`~darla.sweep.spec` reads and expands a sweep file (its format is documented there);
- :mod:`~darla.sweep.names` names each run; :mod:`~darla.sweep.groups` gives its vision group;
- :mod:`~darla.sweep.plan` finds what is left to do, and writes what ``sweep.json`` says;
- :mod:`~darla.sweep.jobs` holds the jobs (a group's stage 1, a run);
- :mod:`~darla.sweep.executors` runs them, locally or on Ray;
- :mod:`~darla.sweep.udr` scores each vision model among the other seeds of its hyperparameters
  (UDR across runs) once the runs are done, into ``udr.json``, which the sweep's report reads.
"""

from __future__ import annotations

from darla.sweep.executors import EXECUTORS, SweepError, run_sweep
from darla.sweep.groups import stage_1_inputs, vision_config, vision_key
from darla.sweep.jobs import copy_shared_vision, run_job, vision_job
from darla.sweep.names import make_run_name
from darla.sweep.plan import Plan, plan_sweep, run_is_complete, sweep_state
from darla.sweep.spec import Resources, Sweep, SweepRun, load_sweep

__all__ = [
    "Sweep", "SweepRun", "Resources", "load_sweep", "make_run_name", "vision_config", "vision_key", "stage_1_inputs",
    "Plan", "plan_sweep", "run_is_complete", "sweep_state", "vision_job", "run_job", "copy_shared_vision",
    "EXECUTORS", "SweepError", "run_sweep",
]
