"""FLOPs of a compiled XLA program with every loop body counted as often as it runs.

XLA's cost analysis (`Compiled.cost_analysis()`, HloCostAnalysis) counts a `while` body ONCE. A train step
has several loops: the scanned layer stack (L trips, forward and backward), the chunked loss's scan over
sequence chunks, gradient accumulation over microbatches, and on TPU libtpu's windowed einsums (an
all-gathered or reduce-scattered matmul turned into a loop over the shards). So we take the optimised
program's text apart: for each while loop we find its trip count from its condition (`i < N`, i starting at
a constant and stepping by a constant, the form jax's scan/fori_loop and libtpu's loops take), run XLA's own cost
analysis on its body alone (the body made the module's entry), and add (trips - 1) x the body, innermost
loops first:

    F(C) = cost(C) + sum over whiles w in C of (trips_w x F(body_w) - cost(body_w))

where cost() is XLA's once-per-body figure (so a nested loop's body is corrected inside its parent's).
A loop whose trip count is not of that form raises UncountedLoop: the caller reports FLOPs as not counted
rather than guessing. Same figure as cost analysis of the fully unrolled program (checked in
tests/test_aot.py and against the unrolled probes at 190M, docs/tpu-compile.md), from the one compile the
memory check already makes.

Custom calls (the splash attention kernel) read as zero FLOPs here as in cost analysis; ladder.aot adds them.
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"^(ENTRY )?%(\S+) \(.*\{\s*$")
_END = re.compile(r"^\}\s*(,.*)?$")
_WHILE = re.compile(r"^\s*(?:ROOT )?%\S+ = .*? while\(%[^)\s]+\), condition=%([^,\s]+), body=%([^,\s]+)")
# attributes naming the computations an instruction calls (fusions, reductions, branches, async wrappers);
# _CALLS_OR_LOOPS adds a while's condition and body
_CALLS = re.compile(r"(?:calls|to_apply|true_computation|false_computation)=%[\w.\-]+|"
                    r"(?:branch_computations|called_computations)=\{[^}]*\}")
_CALLS_OR_LOOPS = re.compile(_CALLS.pattern + r"|(?:condition|body)=%[\w.\-]+")
_METADATA = re.compile(r", metadata=\{[^{}]*\}")
_DEFINITION = re.compile(r"^(\s*(?:ROOT )?%[\w.\-]+ = )(.*?) (async-start|async-update|async-done)\(")


class UncountedLoop(Exception):
    """A while loop whose trip count cannot be read from its condition (count it by other means)."""


def split_computations(hlo_text: str) -> tuple[dict[str, list[str]], str]:
    """{computation name: its lines, header and closing brace included}, and the entry's name."""
    comps, entry, current = {}, None, None
    for line in hlo_text.splitlines():
        if current is None:
            m = _HEADER.match(line)
            if m:
                current = m.group(2)
                comps[current] = [line]
                if m.group(1):
                    entry = current
        else:
            comps[current].append(line)
            if _END.match(line):  # not a "}}, ..." that ends an attribute spread over lines (splash's)
                current = None
    if entry is None:
        raise ValueError("no ENTRY computation in the HLO text")
    return comps, entry


def _instructions(lines: list[str]) -> dict[str, str]:
    """{instruction name: its line} of one computation."""
    out = {}
    for line in lines[1:-1]:
        m = re.match(r"\s*(?:ROOT )?%(\S+) = ", line)
        if m:
            out[m.group(1)] = line
    return out


def _operands(line: str, opcode: str) -> list[str]:
    """Operand names of an instruction line `... opcode(%a, %b), ...` (operand shapes may be inline)."""
    start = line.find(f" {opcode}(")
    if start < 0:
        return []
    depth, i = 0, start + len(opcode) + 1
    for j in range(i, len(line)):
        depth += {"(": 1, ")": -1}.get(line[j], 0)
        if depth == 0:
            return re.findall(r"%([\w.\-]+)", line[i:j + 1])
    return []


def _constant(line: str) -> int | None:
    m = re.search(r"\bconstant\((-?\d+)\)", line)
    return int(m.group(1)) if m and " constant(" in line else None


def _source(instructions: dict[str, str], name: str) -> str:
    """The line defining `name`, looking through copies and bitcasts (XLA inserts them around loop state)."""
    line = instructions.get(name, "")
    for _ in range(8):
        for opcode in ("copy", "bitcast"):
            ops = _operands(line, opcode)
            if len(ops) == 1:
                line = instructions.get(ops[0], "")
                break
        else:
            return line
    return line


def _parseable(lines: list[str]) -> list[str]:
    """The lines with libtpu's SparseCore offloads made plain for jaxlib's HLO parser, which refuses them: an
    offloaded gather (v5p: the embedding lookup, the loss's target logits) is an async-start with no
    operands whose async-update takes the data ("AsyncUpdate and AsyncDone expect a single async op as their
    operand"). Each op of such a start/update/done chain becomes a custom call of the same shape on the same
    operands: a gather moves data, and cost analysis counts a custom call as 0 FLOPs either way."""
    ins = _instructions(["", *lines, ""])
    offloaded = set()
    for name, line in ins.items():
        if " async-update(" in line and len(ops := _operands(line, "async-update")) > 1:
            offloaded |= {name, ops[0]}
    if not offloaded:
        return lines
    offloaded |= {n for n, l in ins.items() if " async-done(" in l and set(_operands(l, "async-done")) & offloaded}
    out = []
    for line in lines:
        m = _DEFINITION.match(line)
        name = re.match(r"\s*(?:ROOT )?%([\w.\-]+) = ", line)
        if m and name and name.group(1) in offloaded:
            ops = ", ".join("%" + op for op in _operands(line, m.group(3)))
            line = f'{m.group(1)}{m.group(2)} custom-call({ops}), custom_call_target="ladder.offloaded"'
        out.append(line)
    return out


def _root(lines: list[str]) -> str:
    return next((l for l in lines[1:-1] if l.lstrip().startswith("ROOT ")), "")


def _as_op(line: str, opcode: str, computations: dict[str, list[str]]) -> list[str] | None:
    """The operands of `line` if it is `opcode(...)`, or a fusion whose computation is just that op on its
    parameters (XLA:CPU wraps a loop's compare and add so); else None."""
    if f" {opcode}(" in line:
        return _operands(line, opcode)
    called = re.search(r"calls=%([\w.\-]+)", line) if " fusion(" in line else None
    inner = computations.get(called.group(1)) if called else None
    if not inner or f" {opcode}(" not in _root(inner):
        return None
    params = {name: int(re.search(r"parameter\((\d+)\)", l).group(1))
              for name, l in _instructions(inner).items() if " parameter(" in l}
    outer = _operands(line, "fusion")
    inner_ops = _operands(_root(inner), opcode)
    if not all(op in params and params[op] < len(outer) for op in inner_ops):
        return None
    return [outer[params[op]] for op in inner_ops]


def trip_count(parent: list[str], while_line: str, cond: list[str], body: list[str],
               computations: dict[str, list[str]] | None = None) -> int:
    """Trips of a while loop: XLA's own `known_trip_count` annotation where it left one (XLA:CPU does), else
    read from the loop (libtpu leaves none): a condition `i < N` (or `N > i`) with N a constant, and i a
    tuple element that starts at a constant s and steps by a constant k > 0 in the body: ceil((N - s) / k)
    trips (libtpu's bidirectional windowed einsums step by 2 over the shards)."""
    known = re.search(r'"known_trip_count":\{"n":"(\d+)"\}', while_line)
    if known:
        return int(known.group(1))
    computations = computations or {}
    cond_ins, body_ins, parent_ins = _instructions(cond), _instructions(body), _instructions(parent)
    root = _root(cond)
    compared = _as_op(root, "compare", computations)
    direction = re.search(r"direction=(LT|GT)", root if " compare(" in root else " ".join(
        computations.get((re.search(r"calls=%([\w.\-]+)", root) or [None, ""])[1], [])))
    if not compared or len(compared) != 2 or not direction:
        raise UncountedLoop(f"condition is not `counter < constant`: {root.strip()[:120]}")
    counter, bound = compared if direction.group(1) == "LT" else compared[::-1]
    n = _constant(_source(cond_ins, bound))
    gte = re.search(r"get-tuple-element\(%[\w.\-]+\), index=(\d+)", _source(cond_ins, counter))
    if n is None or gte is None:
        raise UncountedLoop(f"condition is not `counter < constant`: {root.strip()[:120]}")
    index = int(gte.group(1))
    # the start: element `index` of the tuple the while is given
    start_ops = _operands(parent_ins.get(_operands(while_line, "while")[0], ""), "tuple")
    start = _constant(_source(parent_ins, start_ops[index])) if index < len(start_ops) else None
    # the step: the body's result tuple element `index` = counter + k
    out_ops = _operands(_root(body), "tuple")
    step_ops = (_as_op(_source(body_ins, out_ops[index]), "add", computations) or []) if index < len(out_ops) else []
    steps = [_constant(_source(body_ins, op)) for op in step_ops]
    step = next((k for k in steps if k is not None and k > 0), None)
    counts = any(re.search(rf"get-tuple-element\(%[\w.\-]+\), index={index}\b", _source(body_ins, op))
                 for op in step_ops)
    if start is None or step is None or not counts:
        raise UncountedLoop(f"loop counter (tuple index {index}) does not start at a constant and step by a "
                            "positive constant")
    return max(-(-(n - start) // step), 0)


def loop_corrected_flops(hlo_text: str, cost_of) -> dict:
    """FLOPs of the program with each while body counted x its trip count.

    cost_of(module_text) -> XLA's cost-analysis FLOPs of a module (bodies once); called on the module and
    on each loop body made the entry. Returns {"flops", "flops_once" (cost analysis as XLA gives it),
    "loops": [(body name, trips, body FLOPs counted once)]}."""
    comps, entry = split_computations(hlo_text)
    header = hlo_text.split("\n", 1)[0]
    counter = _LoopCounter(comps, "HloModule " + header.split()[1].rstrip(","), cost_of)
    flops = counter.corrected(entry)
    return {"flops": flops, "flops_once": counter.once(entry), "loops": counter.loops}


class _LoopCounter:
    """A program's computations costed one at a time (each made a module's entry, with what it calls), and
    corrected for loops: F(C) = cost(C) + sum over C's while loops of (trips x F(body) - cost(body)),
    innermost first. `loops` records (body, trips, cost of the body once) as they are counted."""

    def __init__(self, comps: dict[str, list[str]], module_header: str, cost_of):
        self.comps, self.module_header, self.cost_of = comps, module_header, cost_of
        self.cache: dict[str, float] = {}
        self.loops: list[tuple[str, int, float]] = []

    def corrected(self, name: str) -> float:
        total = self.once(name)
        for parent, line, cond, body in self._whiles_under(name, set()):
            trips = trip_count(self.comps[parent], line, self.comps[cond], self.comps[body], self.comps)
            self.loops.append((body, trips, self.once(body)))
            total += trips * self.corrected(body) - self.once(body)
        return total

    def once(self, name: str) -> float:
        """XLA's cost analysis of computation `name` as a module's entry: every loop body in it counted once."""
        if name not in self.cache:
            text = [self.module_header, ""]
            for other in reversed(self._reachable(name)):  # callees before callers, the entry last
                lines = self.comps[other]
                first = lines[0][len("ENTRY "):] if lines[0].startswith("ENTRY ") else lines[0]
                body = _parseable([_METADATA.sub("", l) for l in lines[1:]])
                text += (["ENTRY " + first] if other == name else [first]) + body + [""]
            self.cache[name] = float(self.cost_of("\n".join(text)))
        return self.cache[name]

    def _called(self, name: str, pattern) -> list[str]:
        return [c for m in pattern.finditer("\n".join(self.comps[name]))
                for c in re.findall(r"%([\w.\-]+)", m.group(0)) if c in self.comps]

    def _reachable(self, name: str) -> list[str]:
        """`name` and every computation it calls, directly or not (what a module with it as entry needs)."""
        order, seen, stack = [], set(), [name]
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                order.append(n)
                stack += self._called(n, _CALLS_OR_LOOPS)
        return order

    def _whiles_under(self, name: str, seen: set) -> list[tuple[str, str, str, str]]:
        """(parent, while line, cond, body) of every while reached from `name` without entering a loop body."""
        if name in seen:
            return []
        seen.add(name)
        out = []
        for line in self.comps[name][1:-1]:
            w = _WHILE.match(line)
            if w:
                out.append((name, line) + w.groups())
                continue
            for m in _CALLS.finditer(line):
                for callee in re.findall(r"%([\w.\-]+)", m.group(0)):
                    if callee in self.comps:
                        out += self._whiles_under(callee, seen)
        return out


def xla_cost_of(module_text: str) -> float:
    """XLA's HloCostAnalysis FLOPs of an HLO module given as text (the CPU client's analysis: on the
    compiled TPU program it agrees with `Compiled.cost_analysis()` to within a few FLOPs)."""
    import jax
    from jaxlib import _hlo, _jax

    module = _hlo.hlo_module_from_text(module_text)
    return float(_jax.hlo_module_cost_analysis(jax.devices("cpu")[0].client, module)["flops"])
