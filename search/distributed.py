"""The processes of a distributed search: who they are, and rank 0's decisions sent to all of them.

``accelerate launch`` (GPUs) and ``torchrun`` set the process group up; on machines without an accelerator
the processes talk over gloo, which Accelerate's ``PartialState`` only does when told ``cpu=True``. Its own
``AcceleratorState`` takes that from ``ACCELERATE_USE_CPU`` (set by ``accelerate launch --cpu``), so the
search does the same: ``ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 search/run_opnas.py ...`` runs a
two-process search on one CPU machine, and the ``Trainer`` of each candidate joins the same group.
"""

from __future__ import annotations

from typing import Any

from accelerate import PartialState
from accelerate.utils import broadcast_object_list, parse_flag_from_env


def distributed_state() -> PartialState:
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def broadcast_from_main(value: Any) -> Any:
    """The main process's ``value`` on every process (pickled by ``torch.distributed``); a no-op on one."""
    state = distributed_state()
    if state.num_processes == 1:
        return value
    box = [value if state.is_main_process else None]
    broadcast_object_list(box, from_process=0)
    return box[0]


def close_process_group() -> None:
    """Wait for every process, then take the process group down.

    A gloo group left to the interpreter's shutdown can abort a process ("terminate called without an
    active exception") after all its work is done, which turns a finished search into a failed launch.
    """
    state = distributed_state()
    if state.num_processes > 1:
        state.wait_for_everyone()
        state.destroy_process_group()
