"""Running a sweep: the driver (:func:`run_sweep`), locally in processes or as Ray tasks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from darla.errors import UserError
from darla.runs import RunDir, check_writable
from darla.sweep.jobs import Log, run_job, vision_job
from darla.sweep.plan import Plan, plan_sweep, sweep_state
from darla.sweep.spec import Sweep, SweepRun
from darla.sweep.udr import NUM_IMAGES, cross_run_udr
from vision.io import write_json_atomic

EXECUTORS = ("local", "ray")


class SweepError(UserError, RuntimeError):
    """A sweep that ran but did not finish every run (failed runs, a missing Ray)."""


def run_sweep(
    sweep: Sweep, *, executor: str = "local", workers: int | None = None, address: str | None = None,
    log: Log = print, udr_images: int = NUM_IMAGES,
) -> dict[str, Any]:
    """Run (or continue) every run of ``sweep``; returns the final ``sweep.json`` content.

    ``local``: ``workers`` processes at a time (``spawn``; one torch thread each); one worker
    runs in this process. ``ray``: one Ray task per vision group and per run, with ``resources``,
    on a local Ray started here (``workers`` CPUs) or the cluster at ``address``. Runs of a vision
    group start as soon as their group's stage 1 is done. The sweep dir is locked while this
    runs (:meth:`darla.runs.RunDir.lock`): a second driver on it fails at once. Then it scores
    UDR across the seeds of each stage-1 setting into ``udr.json`` (:func:`darla.sweep.udr.cross_run_udr`,
    ``udr_images`` images per population).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be ≥ 1, got {workers}")
    if address is not None and executor != "ray":
        raise ValueError("--address names a Ray cluster: use it with --executor ray")
    # Absolute: a Ray worker (or a cluster node) does not share this process's working directory.
    sweep = replace(sweep, sweep_dir=sweep.sweep_dir.resolve())
    # One driver per sweep dir: the lock is the sweep dir's own .lock; each run (and each shared
    # vision dir) is locked separately by whichever process runs it.
    with RunDir(sweep.sweep_dir).lock(kind="sweep"):
        check_writable(sweep.sweep_dir)
        plan, status = plan_sweep(sweep)
        tracker = _Tracker(sweep, status, executor, log)
        tracker.write()
        skipped = len(sweep.runs) - len(plan.runs)
        log(f"[sweep] {sweep.name}: {len(sweep.runs)} runs ({skipped} complete), {len(plan.visions)} vision model(s) to train, "
            f"{len({r.vision_key for r in sweep.runs})} vision group(s); {executor} executor; in {sweep.sweep_dir}")
        if plan.runs:
            try:
                if executor == "ray":
                    _execute_ray(sweep, plan, tracker, workers, address)
                else:
                    _execute_local(sweep, plan, tracker, workers or 1)
            except BaseException:
                tracker.interrupted()
                raise
        state = tracker.write()
        # UDR across seeds needs every seed's model: scored here, once the runs are done, so that
        # the report only reads udr.json (a population already scored is read from it, not redone)
        cross_run_udr(sweep.sweep_dir, state, num_images=udr_images, log=log)
        return state


class _Tracker:
    """Collects job results and rewrites ``sweep.json`` (atomically) after each one."""

    def __init__(self, sweep: Sweep, status: dict[str, dict[str, Any]], executor: str, log: Log) -> None:
        self.sweep, self.status, self.executor, self.log = sweep, status, executor, log

    def write(self) -> dict[str, Any]:
        state = sweep_state(self.sweep, self.status, self.executor)
        write_json_atomic(self.sweep.sweep_dir / "sweep.json", state)
        return state

    def running(self, key: str) -> None:
        self.status[key] = {"status": "running"}

    def done(self, key: str, result: Mapping[str, Any]) -> None:
        self.status[key] = dict(result)
        err = f": {result['error']}" if result.get("error") else ""
        self.log(f"[sweep] {key}: {result['status']}{err} ({result.get('wall_time_s', 0):.1f} s)")
        self.write()

    def interrupted(self) -> None:
        for v in self.status.values():
            if v.get("status") == "running":
                v["status"] = "interrupted"
        self.write()


def _execute_local(sweep: Sweep, plan: Plan, tracker: _Tracker, workers: int) -> None:
    if workers == 1:  # in this process: no spawn cost, and a debugger sees everything
        import torch

        saved = torch.get_num_threads()  # one thread, as a worker has (2 on a busy 2-core box ran 5× slower)
        try:
            vision_results = {}
            for key, vcfg in plan.visions.items():
                tracker.running(f"vision/{key}")
                vision_results[key] = vision_job(vcfg, str(sweep.vision_dir(key)))
                tracker.done(f"vision/{key}", vision_results[key])
            for r in plan.runs:
                tracker.running(r.name)
                tracker.done(r.name, run_job(r.config, str(sweep.run_dir(r)), str(sweep.vision_dir(r.vision_key)),
                                             vision_results.get(r.vision_key)))
        finally:
            torch.set_num_threads(saved)
        return

    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

    ctx = multiprocessing.get_context("spawn")  # CUDA and torch's thread pools do not survive fork
    waiting = {key: [r for r in plan.runs if r.vision_key == key] for key in plan.visions}
    pending: dict[Future, str] = {}
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        def submit_run(r: SweepRun, vres: Mapping[str, Any] | None) -> None:
            pending[pool.submit(run_job, r.config, str(sweep.run_dir(r)), str(sweep.vision_dir(r.vision_key)), vres)] = r.name
            tracker.running(r.name)

        for key, vcfg in plan.visions.items():
            pending[pool.submit(vision_job, vcfg, str(sweep.vision_dir(key)))] = f"vision/{key}"
            tracker.running(f"vision/{key}")
        for r in plan.runs:
            if r.vision_key not in plan.visions:
                submit_run(r, None)
        tracker.write()
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    key = pending.pop(fut)
                    try:
                        result = fut.result()
                    except Exception as e:  # a worker that died (OOM, segfault) takes only its job
                        result = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
                    if key.startswith("vision/"):
                        for r in waiting.pop(key.split("/", 1)[1]):
                            submit_run(r, result)
                    tracker.done(key, result)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _execute_ray(sweep: Sweep, plan: Plan, tracker: _Tracker, workers: int | None, address: str | None) -> None:
    try:
        import ray
    except ImportError:
        raise SweepError("--executor ray needs Ray: pip install 'darla[ray]' (or: pip install 'ray[default]>=2.9')") from None

    started_here = not ray.is_initialized()
    if started_here:
        kwargs: dict[str, Any] = {"address": address} if address else {"num_cpus": workers} if workers else {}
        ray.init(**kwargs, include_dashboard=False, log_to_driver=False, configure_logging=False)
    refs: dict[Any, str] = {}
    try:
        opts = {"num_cpus": sweep.resources.num_cpus, "num_gpus": sweep.resources.num_gpus}
        vision_task = ray.remote(vision_job).options(**opts)
        run_task = ray.remote(run_job).options(**opts)
        vision_refs = {}
        for key, vcfg in plan.visions.items():
            vision_refs[key] = vision_task.remote(vcfg, str(sweep.vision_dir(key)))
            refs[vision_refs[key]] = f"vision/{key}"
            tracker.running(f"vision/{key}")
        for r in plan.runs:  # a run's vision result is an argument: Ray starts it when that is ready
            ref = run_task.remote(r.config, str(sweep.run_dir(r)), str(sweep.vision_dir(r.vision_key)), vision_refs.get(r.vision_key))
            refs[ref] = r.name
            tracker.running(r.name)
        tracker.write()
        remaining = list(refs)
        while remaining:
            done, remaining = ray.wait(remaining, num_returns=1)
            try:
                result = ray.get(done[0])
            except Exception as e:  # a task whose worker died; the others go on
                result = {"status": "failed", "error": f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"}
            tracker.done(refs[done[0]], result)
    except BaseException:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
    finally:
        if started_here:
            ray.shutdown()


