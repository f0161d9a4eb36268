"""Plans evaluated on Ray actors (``--workers N``, ``--ray-address ADDR``; the ``precdoctor[scale]`` extra).

One actor per worker slot (a CPU slot here, a GPU where the actors ask for one) holds the model and its
sessions (the gated emulation: every plan an inference pass, gating.py); an evaluation's samples are split
across the actors and their outputs put back in sample order, so the judge (acceptance.py, on the driver)
sees what the sequential run sees and the run's pins, verdicts and journal are the same. An actor lost
mid-evaluation is restarted by Ray and its task retried (``max_restarts``, ``max_task_retries``); a run killed
as a whole resumes from its journal like any other. Ray is imported only when workers are asked for.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from ..core.errors import BadInput
from ..core.limits import ACTOR_CLOSE_SECONDS, ACTOR_RESTARTS

log = logging.getLogger("precdoctor")

SCALE_EXTRA = "pip install 'precdoctor[scale]'"


@dataclass(frozen=True)
class ScaleParams:
    """How many workers evaluate plans, and on which Ray cluster (None: one started on this host)."""

    workers: int = 1
    ray_address: str | None = None
    worker_cpus: int | None = None  # CPU slots (and ONNX Runtime threads) per CPU actor; None: cpus_per_worker()

    @property
    def distributed(self) -> bool:
        """Whether plans go to Ray actors: more than one worker, a cluster named, or a worker's CPU share asked for
        (``--workers 1 --worker-cpus K``: one actor, the baseline a worker sweep measures against)."""
        return self.workers > 1 or self.ray_address is not None or self.worker_cpus is not None

    def check(self) -> None:
        if not isinstance(self.workers, int) or self.workers < 1:
            raise BadInput(f"--workers must be 1 or more, not {self.workers}")
        if self.worker_cpus is not None and (not isinstance(self.worker_cpus, int) or self.worker_cpus < 1):
            raise BadInput(f"--worker-cpus must be 1 or more, not {self.worker_cpus}")
        if self.distributed:
            try:
                import ray  # noqa: F401
            except ImportError:
                raise BadInput(f"--workers {self.workers}{' --ray-address' if self.ray_address else ''} needs Ray: "
                               f"{SCALE_EXTRA}") from None


class _Worker:
    """One actor: the model under test and its sessions, built once; evaluates a plan on some of the samples."""

    def __init__(self, model: bytes, options, device: str, samples: list, threads: int = 0):
        import onnx

        from .emulate import EmulationBackend
        from ..graph import view

        self.samples = samples
        self.graph = view(onnx.load_from_string(model))
        self.runners = EmulationBackend(options, device=device, threads=threads).runners(self.graph, samples)

    def run(self, precision: str, pins: list[str], indices: list[int]) -> list[dict]:
        from ..planning.plan import Plan

        runner = self.runners(Plan(precision, frozenset(pins)))
        return [runner(self.samples[k]) for k in indices]

    def pid(self) -> int:
        import os

        return os.getpid()

    def close(self) -> None:
        """The weight store's temporary folder removed: ray.kill ends the process without running its finalizers."""
        self.graph.store.close()


def cpus_per_worker(workers: int) -> int:
    """This host's cores shared out between the workers (at least one each): ``--workers 4`` on 16 cores gives each
    actor 4, so that the workers together use the machine as one sequential run would."""
    import os

    return max(1, (os.cpu_count() or 1) // workers)


class RayRunners:
    """The plans of a search evaluated on Ray actors (see the module docstring); ``outputs`` as PlanRunners'."""

    def __init__(self, graph, samples: list, backend, scale: ScaleParams):
        import ray

        cuda = backend.device == "cuda"
        cpus = 1 if cuda else scale.worker_cpus or cpus_per_worker(scale.workers)
        # a cluster this run starts is this run's, sized for its actors, and shut down with them: a later run in the same
        # process (another job, a worker sweep) starts its own instead of finding one too small for its actors
        self.started = not ray.is_initialized()
        if self.started:
            kw = {"address": scale.ray_address} if scale.ray_address else {"num_cpus": scale.workers * cpus}
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False, **kw)
        self.ray, self.samples, self.turn = ray, samples, 0
        # one actor per GPU, else per CPU slot of ``cpus`` cores, its ONNX Runtime pool sized to them: ONNX Runtime
        # would otherwise start a thread per core of the host in every actor, and N actors would fight over them
        slot = {"num_gpus": 1} if cuda else {"num_cpus": cpus}
        actor = ray.remote(max_restarts=ACTOR_RESTARTS, max_task_retries=ACTOR_RESTARTS, **slot)(_Worker)
        # held as long as the actors: a restarted actor is built again from these (ray.put objects die with their refs)
        self.model_ref, self.samples_ref = ray.put(graph.model_with_data().SerializeToString()), ray.put(samples)
        self.actors = [actor.remote(self.model_ref, backend.options, backend.device, self.samples_ref, 0 if cuda else cpus)
                       for _ in range(scale.workers)]

    def capacity(self) -> int:
        """Plans that can run at once: one per group of actors an evaluation's samples occupy."""
        return max(1, len(self.actors) // min(len(self.actors), len(self.samples)))

    def submit(self, plan) -> list:
        """Each actor's share of the samples (every n-th), as futures, on the next group of actors in turn."""
        n = min(len(self.actors), len(self.samples))
        group = self.turn % self.capacity()
        self.turn += 1
        actors = self.actors[group * n:(group + 1) * n]
        return [(list(range(k, len(self.samples), n)), actors[k].run.remote(plan.precision, sorted(plan.pins),
                                                                            list(range(k, len(self.samples), n))))
                for k in range(n)]

    def collect(self, futures: list) -> list[dict]:
        out: list = [None] * len(self.samples)
        for indices, ref in futures:
            for k, res in zip(indices, self.ray.get(ref)):
                out[k] = res
        return out

    def outputs(self, plan) -> list[dict]:
        """The plan's graph outputs on every sample, in sample order."""
        return self.collect(self.submit(plan))

    def close(self) -> None:
        try:
            self.ray.get([a.close.remote() for a in self.actors], timeout=ACTOR_CLOSE_SECONDS)
        except Exception as exc:  # noqa: BLE001 - an actor already gone leaves its folder; the run's result stands
            log.warning(f"a worker could not clean up its temporary weight store ({type(exc).__name__})")
        for a in self.actors:
            self.ray.kill(a)
        self.actors = []
        if self.started:
            self.ray.shutdown()
