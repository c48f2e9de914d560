"""The processes of a distributed search: who they are, and rank 0's decisions sent to all of them.

``accelerate launch`` (GPUs) and ``torchrun`` set the process group up; on machines without an accelerator
the processes talk over gloo, which Accelerate's ``PartialState`` only does when told ``cpu=True``. Its own
``AcceleratorState`` takes that from ``ACCELERATE_USE_CPU`` (set by ``accelerate launch --cpu``), so the
search does the same: ``ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 search/run_opnas.py ...`` runs a
two-process search on one CPU machine, and the ``Trainer`` of each candidate joins the same group.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from accelerate import PartialState
from accelerate.utils import broadcast_object_list, parse_flag_from_env


CPU_COMMAND = "ACCELERATE_USE_CPU=1 torchrun --nproc_per_node N search/run_opnas.py ..."


class LaunchError(RuntimeError):
    """The processes present are not the ones the launcher was asked for."""


def distributed_state() -> PartialState:
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def check_launch(num_processes: int, environment: Mapping[str, str] = os.environ) -> None:
    """Stop a launch whose processes are not what was asked for, instead of running it silently single.

    - ``torchrun`` / ``accelerate launch --multi_gpu`` export ``WORLD_SIZE``; if it says more than one process
      but the process group has one (on a machine without GPUs, without ``ACCELERATE_USE_CPU=1``), every
      process would run the whole search alone, all in one output folder.
    - ``accelerate launch`` asked for several processes without a multi-process launcher (``--cpu
      --num_processes N``, or ``--num_processes N`` with no ``--multi_gpu`` on a machine without GPUs)
      starts one process; it still exports ``MASTER_ADDR``/``MASTER_PORT`` for the others, and
      ``ACCELERATE_MIXED_PRECISION`` (as every accelerate launcher does), but no ``WORLD_SIZE``.
    """
    world_size = environment.get("WORLD_SIZE")
    if world_size is not None and world_size.isdigit() and int(world_size) != num_processes:
        raise LaunchError(
            f"the launcher started WORLD_SIZE={world_size} processes, but this one sees a process group of "
            f"{num_processes}: on a machine without GPUs set ACCELERATE_USE_CPU=1 (as in `{CPU_COMMAND}`) so that "
            "the processes join over gloo"
        )
    launched_by_accelerate = "ACCELERATE_MIXED_PRECISION" in environment  # every accelerate launcher exports it
    if launched_by_accelerate and world_size is None and "MASTER_PORT" in environment:
        raise LaunchError(
            "accelerate launch was asked for more than one process (it exported MASTER_ADDR/MASTER_PORT for them) "
            "but started this one alone: `accelerate launch --cpu --num_processes N` runs a single process. On CPUs "
            f"run `{CPU_COMMAND}`; on GPUs `accelerate launch --multi_gpu --num_processes N search/run_opnas.py ...`"
        )


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
