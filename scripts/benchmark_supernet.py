"""The BIWS super-net against the implementation it replaced: speed, file size, and the same search results.

    python scripts/benchmark_supernet.py [--reference_revision 7012966] [--sizes tiny,paper] [--repeats 5]

The reference is ``search/supernet.py`` as of ``--reference_revision`` (read with ``git show``: the last
version that mirrored the model by hand and mapped weights with regexes over state-dict names), imported
beside the current one in this process.

1. **Speed and size**, per model size (``tiny``: ``search/configs/tiny.yaml``'s model; ``paper``: the
   width of ``paper.yaml``, 768 hidden, 12 layers; both with the bundled BERT vocabulary): medians of
   ``--repeats`` interleaved runs of building, ``extract``, ``candidate``, the sequential write-back,
   ``save``, ``load`` and ``from_file`` for one sampled architecture (after one uncounted warm-up round),
   current / reference ratios, and the super-net file size. The operations the reference did not have (``snapshot``, ``write_back_from``,
   ``apply``, the bytes of a snapshot or a write-back) are timed as they are.
2. **Same results.** Both super-nets start from the same weights (the reference's initialisation copied
   into the current one by the correspondence of their names, here only), then ``--candidates`` sampled
   architectures are, in turn, built by both, trained identically (AdamW with weight decay, a few steps on
   seeded random batches), and written back. Every loss, the extracted weights of every architecture seen
   so far after each write-back, and at the end every super-net tensor must be bit-equal; the script says
   where the first difference is, if any.
3. **A renamed parameter.** With the model's ``AutoBertZeroLayer`` patched so that its
   ``mixer_layer_norm`` is registered as ``attention_layer_norm``, each implementation extracts, builds and
   writes back a candidate; the script prints what happened (the current one must round-trip exactly).

Timings on a shared machine are noisy: compare ratios, or rerun on a quiet machine. The last line is one
JSON object of all figures.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from transformers import HfArgumentParser

from modeling_autobert_zero import modeling_autobert_zero as modeling
from search import supernet as current
from search.config import load_config
from search.space import SearchSpace, sample_architecture


REPO = Path(__file__).resolve().parents[1]
VOCAB_SIZE = 30522  # demo_data/vocab.txt, BERT's uncased vocabulary


@dataclasses.dataclass
class BenchmarkArguments:
    reference_revision: str = dataclasses.field(
        default="7012966", metadata={"help": "A git revision whose search/supernet.py is the reference."}
    )
    sizes: str = dataclasses.field(default="tiny,paper", metadata={"help": "Comma-separated: tiny, paper."})
    repeats: int = dataclasses.field(default=5, metadata={"help": "Interleaved timing runs per operation."})
    candidates: int = dataclasses.field(default=8, metadata={"help": "Candidates of the same-results check."})
    seed: int = 0


def reference_module(revision: str):
    """The reference ``search/supernet.py``, imported as ``search.reference_supernet``."""
    source = subprocess.run(
        ["git", "show", f"{revision}:search/supernet.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "reference_supernet.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("search.reference_supernet", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def model_settings(size: str) -> tuple[dict, int]:
    config = load_config(REPO / "search" / "configs" / f"{size}.yaml")
    return {**dataclasses.asdict(config.model), "vocab_size": VOCAB_SIZE, "pad_token_id": 0}, config.space.num_layers


def median_ms(timings: list[float]) -> float:
    return 1000 * statistics.median(timings)


def timed(function: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def speed_and_size(reference, size: str, repeats: int, seed: int, work_dir: Path) -> dict[str, object]:
    settings, num_layers = model_settings(size)
    architecture = sample_architecture(SearchSpace(num_layers=num_layers), random.Random(seed))
    print(f"\n{size}: {num_layers} layers, hidden {settings['hidden_size']}; architecture "
          f"{[layer.get('kernel_size', 'attention') for layer in architecture]}")
    old_path, new_path = work_dir / f"{size}-reference.safetensors", work_dir / f"{size}-current.safetensors"
    shared = ("build", "extract", "candidate", "write_back", "save", "load", "from_file")
    timings: dict[str, dict[str, list[float]]] = {"reference": {op: [] for op in shared}, "current": {op: [] for op in shared}}
    only_current = {op: [] for op in ("snapshot", "snapshot_to_bytes", "from_snapshot_shared", "write_back_from",
                                      "apply", "write_back_to_bytes")}
    for repeat in range(repeats + 1):  # the first round warms up (allocator, page cache) and is not counted
        if repeat == 1:
            for times in (*timings.values(), only_current):
                for values in times.values():
                    values.clear()
        for name in ("reference", "current"):  # interleaved: both see the same machine load
            module, path, times = (reference, old_path, timings["reference"]) if name == "reference" else (current, new_path, timings["current"])
            seconds, net = timed(lambda: module.BiwsSupernet(settings, num_layers, seed))
            times["build"].append(seconds)
            times["extract"].append(timed(lambda: net.extract(architecture))[0])
            seconds, candidate = timed(lambda: net.candidate(architecture))
            times["candidate"].append(seconds)
            if name == "reference":
                times["write_back"].append(timed(lambda: net.write_back(architecture, candidate.state_dict()))[0])
            else:
                times["write_back"].append(timed(lambda: net.write_back(candidate))[0])
                seconds, snapshot = timed(net.snapshot)
                only_current["snapshot"].append(seconds)
                only_current["snapshot_to_bytes"].append(timed(snapshot.to_bytes)[0])
                only_current["from_snapshot_shared"].append(timed(lambda: module.BiwsSupernet.from_snapshot(snapshot, share=True))[0])
                seconds, write_back = timed(lambda: net.write_back_from(candidate))
                only_current["write_back_from"].append(seconds)
                only_current["apply"].append(timed(lambda: net.apply(write_back))[0])
                only_current["write_back_to_bytes"].append(timed(write_back.to_bytes)[0])
                del snapshot, write_back
            times["save"].append(timed(lambda: net.save(path))[0])
            times["load"].append(timed(lambda: net.load(path))[0])
            times["from_file"].append(timed(lambda: module.BiwsSupernet.from_file(path))[0])
            del net, candidate
    figures: dict[str, object] = {}
    print(f"{'operation':<22}{'reference ms':>14}{'current ms':>12}{'ratio':>8}")
    for op in shared:
        old, new = median_ms(timings["reference"][op]), median_ms(timings["current"][op])
        figures[op] = {"reference_ms": old, "current_ms": new, "ratio": new / old}
        print(f"{op:<22}{old:>14.1f}{new:>12.1f}{new / old:>8.2f}")
    for op, values in only_current.items():
        figures[op] = {"current_ms": median_ms(values)}
        print(f"{op:<22}{'-':>14}{median_ms(values):>12.1f}")
    old_bytes, new_bytes = old_path.stat().st_size, new_path.stat().st_size
    figures["file_bytes"] = {"reference": old_bytes, "current": new_bytes, "ratio": new_bytes / old_bytes}
    print(f"{'file size (bytes)':<22}{old_bytes:>14}{new_bytes:>12}{new_bytes / old_bytes:>8.4f}")
    return figures


def current_name(reference_name: str) -> str:
    """Where a tensor of the reference super-net lives in the current one (for this comparison only)."""
    parts = reference_name.split(".")
    if parts[0] == "layer":
        index, branch, rest = parts[1], parts[2], parts[3:]
        prefix = f"autobert_zero.encoder.layer.{index}."
        if branch in ("attention", "conv"):
            if rest[0] == "elastic_kernel":
                rest = ["kernel"] if rest[1] == "taps" else ["kernel_transforms", rest[2]]
            return prefix + ".".join(["mixer", branch, *rest])
        return prefix + ".".join(parts[2:])
    return reference_name if parts[0] == "cls" else f"autobert_zero.{reference_name}"


def train(candidate: torch.nn.Module, vocab_size: int, seed: int, steps: int = 3) -> list[float]:
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(candidate.parameters(), lr=1e-3, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        input_ids = torch.randint(1, vocab_size, (4, 16), generator=generator)
        labels = torch.where(torch.rand(4, 16, generator=generator) < 0.15, input_ids, -100)
        loss = candidate(input_ids=input_ids, labels=labels, next_sentence_label=torch.tensor([0, 1, 0, 1])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def same_results(reference, candidates: int, seed: int) -> dict[str, object]:
    settings, _ = model_settings("tiny")
    settings["vocab_size"] = 200  # a small vocabulary: the check is about the mapping, not the embeddings
    num_layers = 6
    old, new = reference.BiwsSupernet(settings, num_layers, seed), current.BiwsSupernet(settings, num_layers, seed)
    new_parameters = dict(new.named_parameters())
    with torch.no_grad():
        for name, tensor in old.state_dict().items():
            new_parameters.pop(current_name(name)).copy_(tensor)
    assert not new_parameters, f"not covered by the reference: {sorted(new_parameters)[:4]}"
    rng, seen = random.Random(seed), []
    for index in range(candidates):
        architecture = sample_architecture(SearchSpace(num_layers=num_layers), rng)
        seen.append(architecture)
        old_candidate, new_candidate = old.candidate(architecture), new.candidate(architecture)
        old_losses = train(old_candidate, settings["vocab_size"], seed + index)
        new_losses = train(new_candidate, settings["vocab_size"], seed + index)
        if old_losses != new_losses:
            return {"equal": False, "first_difference": f"candidate {index}: losses {old_losses} vs {new_losses}"}
        old.write_back(architecture, old_candidate.state_dict())
        new.write_back(new_candidate)
        for earlier in seen:
            old_weights, new_weights = old.extract(earlier), new.extract(earlier)
            different = [name for name in old_weights if not torch.equal(old_weights[name], new_weights[name])]
            if different:
                return {"equal": False, "first_difference": f"after candidate {index}: extract of {earlier}: {different[:3]}"}
    new_parameters = dict(new.named_parameters())
    different = [name for name, tensor in old.state_dict().items() if not torch.equal(tensor, new_parameters[current_name(name)])]
    if different:
        return {"equal": False, "first_difference": f"final super-net tensors: {different[:3]}"}
    return {"equal": True, "candidates": candidates, "layers": num_layers}


def renamed_parameter(reference) -> dict[str, str]:
    """What each implementation does when the model registers ``mixer_layer_norm`` as ``attention_layer_norm``."""
    layer_class = modeling.AutoBertZeroLayer
    original_init = layer_class.__init__

    def renaming_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.add_module("attention_layer_norm", self._modules.pop("mixer_layer_norm"))

    settings, _ = model_settings("tiny")
    architecture = [{"type": "conv", "kernel_size": 9}, {"type": "attention", "program": "matmul(softmax(scale(matmul(Q, transpose(K)))), V)"}]
    outcomes = {}
    layer_class.__init__ = renaming_init
    layer_class.mixer_layer_norm = property(lambda self: self.attention_layer_norm)  # keeps forward working
    try:
        for name, module in (("reference", reference), ("current", current)):
            net = module.BiwsSupernet(settings, len(architecture), 0)
            before = {key: tensor.clone() for key, tensor in net.state_dict().items()}
            try:
                net.extract(architecture)
                candidate = net.candidate(architecture)
                if module is reference:
                    net.write_back(architecture, candidate.state_dict())
                else:
                    net.write_back(candidate)
                exact = all(torch.equal(before[key], tensor) for key, tensor in net.state_dict().items())
                outcomes[name] = "round trip exact" if exact else "round trip CHANGED the super-net"
            except Exception as error:  # noqa: BLE001 - the point is to report whatever the implementation does
                outcomes[name] = f"{type(error).__name__}: {error}"
    finally:
        layer_class.__init__ = original_init
        del layer_class.mixer_layer_norm
    return outcomes


def main(argv: list[str] | None = None) -> dict[str, object]:
    (arguments,) = HfArgumentParser(BenchmarkArguments).parse_args_into_dataclasses(args=argv)
    torch.manual_seed(arguments.seed)
    reference = reference_module(arguments.reference_revision)
    figures: dict[str, object] = {"reference_revision": arguments.reference_revision, "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as work_dir:
        for size in arguments.sizes.split(","):
            figures[size] = speed_and_size(reference, size, arguments.repeats, arguments.seed, Path(work_dir))
    figures["same_results"] = same_results(reference, arguments.candidates, arguments.seed)
    print(f"\nsame results from the same initial weights ({arguments.candidates} candidates, AdamW): "
          f"{figures['same_results']}")
    figures["renamed_parameter"] = renamed_parameter(reference)
    print(f"mixer_layer_norm registered as attention_layer_norm: {figures['renamed_parameter']}")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
