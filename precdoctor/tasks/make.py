"""The judge of a task for the model under test: the model's own, or the decoder's a Whisper task puts under test
(a module of its own: the decoder's judge builds on the model's, so neither can choose between them)."""
from __future__ import annotations

from ..core.errors import BadInput
from .judge import TaskJudge, dataset
from .placement import Placement
from .registry import TaskParams, make_task


def make_judge(graph, model_path: str, params: TaskParams, placement: Placement | None = None) -> TaskJudge:
    """The judge of a task on ``graph``, the model under test: the model itself, or the decoder that
    ``params`` puts under test (``TaskParams.under_test``; then ``model_path`` is the encoder). ``params`` checked
    already (``TaskParams.check``: every command's parameters run it before any work). ``placement``: the engine's
    device and memory budget (placement.of_engine), the CPU and the default budget where None."""
    placement = placement or Placement()
    if params.decoder_under_test:
        from .decoder_judge import make_decoder_judge

        return make_decoder_judge(graph, model_path, params, placement)
    task = make_task(model_path, params, encoder_graph=graph, placement=placement)
    if len(graph.inputs) != 1:
        raise BadInput(f"the {task.name} task expects a model with one input; this one has {graph.inputs}")
    clips, audio_ = dataset(params, task.rate)
    return TaskJudge(task, graph, clips, audio_, params, graph.inputs[0], placement=placement)
