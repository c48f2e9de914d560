"""Plots of a search (matplotlib): best score so far, operation priority and how it learnt, the best programs.

    python search/plots.py --search_dir runs/opnas-tiny [--output_dir runs/opnas-tiny/plots]

writes ``best_so_far.png`` (best proxy score against candidates evaluated), for OP-NAS ``op_priority.png``
(per program position: each op's mean normalised score μ and count N, the statistics it samples from) and
``priority_entropy.png`` (per generation, the normalised entropy of every position's and conv layer's
distribution: 1 = even, falling as the priorities learn), and ``best_architecture.png`` (the best candidate's
layers, each attention program drawn as its graph). ``scripts/compare_strategies.py`` uses
:func:`plot_best_so_far` and :func:`plot_priority_entropy` over strategies and seeds.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


if __package__ in (None, ""):  # run as a file (python search/plots.py): make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib


matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from transformers import HfArgumentParser  # noqa: E402

from modeling_autobert_zero.architecture import describe_program  # noqa: E402
from modeling_autobert_zero.attention_programs import parse_program  # noqa: E402
from search.comparison import best_so_far, entropy_curves, mean_entropy_curves  # noqa: E402
from search.config import SearchConfig, dataclass_from_mapping  # noqa: E402
from search.state import CONFIG_COPY, SearchState, load_state  # noqa: E402
from search.strategies import STRATEGIES  # noqa: E402
from search.ucb import OperationPriority  # noqa: E402


__all__ = ["best_so_far", "plot_architecture", "plot_best_so_far", "plot_operation_priority", "plot_priority_entropy", "plot_search"]


def _stack(runs: Sequence[np.ndarray]) -> np.ndarray:
    """Runs of different lengths or widths as one array, padded with NaN."""
    shape = tuple(max(run.shape[axis] for run in runs) for axis in range(runs[0].ndim))
    stacked = np.full((len(runs), *shape), np.nan)
    for index, run in enumerate(runs):
        stacked[(index, *(slice(0, size) for size in run.shape))] = run
    return stacked


def plot_best_so_far(curves: Mapping[str, Sequence[np.ndarray]], path: str | Path, title: str = "Best proxy score so far") -> Path:
    """One line per label: the mean over its runs (seeds), shaded between their 25th and 75th percentiles."""
    figure, axes = plt.subplots(figsize=(6.4, 4.0))
    for label, runs in curves.items():
        stacked = _stack(list(runs))
        steps = np.arange(1, stacked.shape[1] + 1)
        (line,) = axes.plot(steps, np.nanmean(stacked, axis=0), label=f"{label} ({len(runs)} run{'s' if len(runs) > 1 else ''})")
        if len(runs) > 2:
            low, high = np.nanpercentile(stacked, [25, 75], axis=0)
            axes.fill_between(steps, low, high, color=line.get_color(), alpha=0.2)
    axes.set_xlabel("candidates evaluated")
    axes.set_ylabel("best score so far (mean; band: 25th-75th percentile)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    return _save(figure, path)


def plot_priority_entropy(runs: Sequence[Mapping[str, np.ndarray]], path: str | Path, title: str = "Operation priority") -> Path:
    """Normalised entropy per generation of each position's (left) and conv layer's (right) distribution,
    averaged over ``runs`` (one :func:`search.comparison.entropy_curves` each): 1 = even, 0 = one option."""
    mean = mean_entropy_curves(runs)
    figure, panels = plt.subplots(1, 2, figsize=(10, 4.0), sharey=True)
    for axes, part, label in ((panels[0], "positions", "position"), (panels[1], "kernels", "conv layer")):
        if part in mean:
            colours = plt.cm.viridis(np.linspace(0, 0.9, mean[part].shape[1]))
            for column in range(mean[part].shape[1]):
                axes.plot(np.arange(mean[part].shape[0]), mean[part][:, column], color=colours[column], label=f"{label} {column}")
            axes.legend(fontsize=7, ncol=2)
        axes.set_xlabel("generation")
        axes.set_title(f"per {label}")
        axes.grid(alpha=0.3)
    panels[0].set_ylabel(f"entropy / log(options), mean of {len(runs)} run{'s' if len(runs) > 1 else ''}")
    panels[0].set_ylim(-0.02, 1.02)
    figure.suptitle(title)
    return _save(figure, path)


def plot_operation_priority(priority: OperationPriority, path: str | Path) -> Path:
    """Heat maps over (program position × op): mean normalised score μ of evaluated paths, and how often N."""
    positions = len(priority.position_tables)
    if positions == 0:
        raise ValueError("no attention program has been evaluated yet: nothing to plot")
    counts = np.array([table.counts for table in priority.position_tables], dtype=float)
    means = np.array([[m if m is not None else np.nan for m in table.means()] for table in priority.position_tables])
    figure, (left, right) = plt.subplots(1, 2, figsize=(4 + 0.6 * len(priority.ops), 1.5 + 0.35 * positions), sharey=True)
    for axes, values, title, colour_map in ((left, means, "mean score μ", "viridis"), (right, counts, "count N", "Greys")):
        image = axes.imshow(values, aspect="auto", cmap=colour_map)
        axes.set_xticks(range(len(priority.ops)), priority.ops, rotation=60, ha="right")
        axes.set_title(title)
        figure.colorbar(image, ax=axes, fraction=0.05)
    left.set_yticks(range(positions))
    left.set_ylabel("program position")
    figure.suptitle("Operation priority (OP-NAS statistics per position)")
    return _save(figure, path)


def _program_layout(program) -> tuple[dict[Any, tuple[float, float]], list[tuple[Any, Any]]]:
    """Node positions (inputs in column 0, each instruction one column right of its deepest argument)."""
    depth: dict[Any, int] = {name: 0 for name in program.inputs_read()}
    edges = []
    for index, instruction in enumerate(program.instructions):
        depth[index] = 1 + max(depth[arg] for arg in instruction.args)
        edges.extend((arg, index) for arg in instruction.args)
    columns: dict[int, list[Any]] = {}
    for node, column in depth.items():
        columns.setdefault(column, []).append(node)
    positions = {}
    for column, nodes in columns.items():
        for row, node in enumerate(nodes):
            positions[node] = (column, row - (len(nodes) - 1) / 2)
    return positions, edges


def plot_architecture(architecture: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """One row per layer: conv layers as a box, attention programs as graphs from inputs to output."""
    figure, rows = plt.subplots(len(architecture), 1, figsize=(9, 1.6 * len(architecture)), squeeze=False)
    for index, (layer, axes) in enumerate(zip(architecture, rows[:, 0])):
        axes.axis("off")
        if layer["type"] == "conv":
            axes.text(0.5, 0.5, f"layer {index + 1}: lightweight conv, kernel {layer['kernel_size']}", ha="center", va="center",
                      bbox={"boxstyle": "round", "facecolor": "#dde8f5"}, transform=axes.transAxes)
            continue
        program = parse_program(layer["program"])
        positions, edges = _program_layout(program)
        for source, target in edges:
            span = positions[target][0] - positions[source][0]
            axes.annotate("", xy=positions[target], xytext=positions[source], arrowprops={
                "arrowstyle": "->", "color": "#777777", "shrinkA": 12, "shrinkB": 12,
                "connectionstyle": f"arc3,rad={0.25 if span > 1 else 0.0}",  # long edges bend around the nodes between
            })
        last = len(program) - 1
        for node, (x, y) in positions.items():
            label = node if isinstance(node, str) else program.instructions[node].op
            colour = "#f5e6c8" if isinstance(node, str) else "#c8f5d2" if node == last else "#ffffff"
            axes.text(x, y, label, ha="center", va="center", fontsize=8, bbox={"boxstyle": "round", "facecolor": colour})
        xs = [x for x, _ in positions.values()]
        ys = [y for _, y in positions.values()]
        axes.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
        axes.set_ylim(min(ys) - 0.8, max(ys) + 0.8)
        axes.set_title(f"layer {index + 1}: {describe_program(program)}", fontsize=8, loc="left")
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def _save(figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _operation_priority(search_dir: Path, state: SearchState) -> OperationPriority | None:
    """The OP-NAS statistics of a search, rebuilt by its strategy from the state it owns (None for others)."""
    config: SearchConfig = dataclass_from_mapping(SearchConfig, json.loads((search_dir / CONFIG_COPY).read_text()))
    strategy = STRATEGIES[config.strategy](config.space, config.search, config.objective, config.model.dimensions())
    strategy.load_state_dict(state.strategy_state)
    return getattr(strategy, "priority", None)


def plot_search(search_dir: str | Path, output_dir: str | Path | None = None) -> list[Path]:
    """Every plot of one search that applies to its strategy."""
    search_dir = Path(search_dir)
    output_dir = Path(output_dir) if output_dir is not None else search_dir / "plots"
    state: SearchState = load_state(search_dir)
    written = [plot_best_so_far({"search": [best_so_far(state.history)]}, output_dir / "best_so_far.png")]
    priority = _operation_priority(search_dir, state)
    if priority is not None and priority.position_tables:
        written.append(plot_operation_priority(priority, output_dir / "op_priority.png"))
    entropies = entropy_curves(state)
    if entropies:
        written.append(plot_priority_entropy([entropies], output_dir / "priority_entropy.png"))
    ok = [record for record in state.history if record.status == "ok"]
    if ok:
        best = max(ok, key=lambda record: (record.score, -record.index))
        written.append(
            plot_architecture(best.architecture, output_dir / "best_architecture.png", f"candidate {best.index}, score {best.score:.4f}")
        )
    return written


@dataclasses.dataclass
class PlotArguments:
    search_dir: str = dataclasses.field(metadata={"help": "The search's output_dir."})
    output_dir: str | None = dataclasses.field(default=None, metadata={"help": "Default: SEARCH_DIR/plots."})


def main(argv: list[str] | None = None) -> list[Path]:
    (arguments,) = HfArgumentParser(PlotArguments).parse_args_into_dataclasses(args=argv)
    written = plot_search(arguments.search_dir, arguments.output_dir)
    for path in written:
        print(path)
    return written


if __name__ == "__main__":
    main()
