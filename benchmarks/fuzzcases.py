"""Bad-input fuzz cases for specs and policy files, and the property every case must keep.

Shared by ``benchmarks/fuzz.py`` (>= 1,000 cases) and ``tests/test_fuzz.py`` (a few dozen).
A case is a file's bytes: a mutation of a shipped spec (``examples/``) or policy file
(``autofix/policies/``) -- keys dropped or renamed, wrong types, unknown keys, huge or non-finite
numbers, deep nesting --, or raw text: empty files, binary junk, invalid UTF-8, YAML syntax
errors, alias bombs and recursive anchors, duplicate keys, tabs.

The property (:func:`check_case`): the CLI called in-process (``autofix run FILE --output
DIR`` or ``autofix policies check FILE``) exits 2 with messages that name the file, prints no
traceback, leaves the output directory as it was and starts no Ray -- or exits 0 when the
mutated document happens to be valid, in which case the run is stopped where Ray would start
(``autofix.tune.runner.ray_session`` and ``_fit`` are replaced) and counted apart.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import re
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

__all__ = ["CASE_TIMEOUT_S", "SEEDS", "Case", "Outcome", "RunStarted", "cases", "check_case", "run_case"]

CASE_TIMEOUT_S = 20.0
"""A case that takes longer (an alias bomb expanded, a quadratic walk) is a failure."""


def _seed_files() -> dict[str, dict[str, str]]:
    specs = sorted(ROOT.glob("examples/*.yaml")) + sorted(ROOT.glob("examples/*/*.yaml"))
    policies = sorted(p for p in ROOT.glob("autofix/policies/*.yaml"))
    return {"spec": {str(p.relative_to(ROOT)): p.read_text() for p in specs},
            "policy": {str(p.relative_to(ROOT)): p.read_text() for p in policies}}


SEEDS = _seed_files()
"""Shipped valid documents by kind: repository-relative path -> text."""


@dataclass(frozen=True)
class Case:
    """One input file: which command reads it, how it was made, and its bytes."""

    kind: str  # "spec" (autofix run) or "policy" (autofix policies check)
    category: str
    data: bytes
    note: str = ""
    field: str = ""  # a dotted path the document's problem is known to be at ("" = unknown)

    def __repr__(self) -> str:  # hypothesis prints the falsifying example with this
        shown = self.data if len(self.data) <= 400 else self.data[:400] + b"...(%d bytes)" % len(self.data)
        return f"Case(kind={self.kind!r}, category={self.category!r}, note={self.note!r}, data={shown!r})"


# -- structured mutations of the shipped documents ---------------------------------------------

HUGE_INTS = (2**31, 2**63, -(2**63) - 1, 10**20, 10**400, -(10**400))
HUGE_FLOATS = (1e308, -1e308, 1e-320, 5e-324)
NON_FINITE = (math.nan, math.inf, -math.inf)

FIELD_NAMES = ("version", "name", "training", "trainable", "config", "knobs", "metric", "mode", "loss_metric",
               "success", "symptoms", "policies", "budget", "ray", "python_path", "ledger", "model", "data",
               "factory", "args", "optimizer", "lr", "epochs", "batch_size", "seed", "scheduler", "grad_clip",
               "probes", "window", "when", "then", "symptom", "where", "for_steps", "action", "path", "factor",
               "times", "enabled", "priority", "max_fires", "labels", "distributed", "storage_path")
"""Field names of specs and policy files, for mutations that put known keys in odd places."""

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.sampled_from(HUGE_INTS),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(HUGE_FLOATS + NON_FINITE), _text,
    st.sampled_from(["", "builtin", "module:nothing", "os:system", "1e999", ".nan", "yes", "null", "-"]),
)
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.one_of(_text, st.integers(-3, 3)), inner, max_size=3)),
    max_leaves=6)


def _locations(doc: Any, loc: tuple = ()) -> Iterator[tuple]:
    """Every location in a document (the root included), parents before children."""
    yield loc
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _locations(value, loc + (key,))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from _locations(value, loc + (i,))


def _get(doc: Any, loc: tuple) -> Any:
    for part in loc:
        doc = doc[part]
    return doc


def _dotted(loc: tuple) -> str:
    return ".".join(str(p) for p in loc)


@st.composite
def _mutation(draw, doc: Any) -> tuple[Any, str, str]:
    """One change somewhere in ``doc`` (changed in place, or replaced when at the root)."""
    locations = list(_locations(doc))
    # the root rarely (hypothesis draws index 0 often, and replacing the root hides the rest)
    loc = () if len(locations) == 1 or draw(st.integers(0, 19)) == 19 else draw(st.sampled_from(locations[1:]))
    op = draw(st.sampled_from(["drop", "rename", "retype", "unknown", "huge", "nonfinite", "deep", "retype", "field"]))
    if op == "field":  # a field the schema knows, set where it may or may not belong, to anything
        target = _get(doc, loc) if isinstance(_get(doc, loc), dict) else doc
        if isinstance(target, dict):
            key = draw(st.sampled_from(FIELD_NAMES))
            target[key] = draw(_values)
            return doc, f"field {key!r} = {_short(target[key])}", ""
    if not loc:  # the root itself: only adding a key or replacing the whole document apply
        if op == "unknown" and isinstance(doc, dict):
            key = draw(_text.filter(lambda k: k not in doc))
            doc[key] = draw(_values)
            return doc, f"unknown top-level key {key!r}", key
        return draw(_values), "root replaced", ""
    parent, key = _get(doc, loc[:-1]), loc[-1]
    where = _dotted(loc)
    if op == "drop":
        del parent[key]
        return doc, f"dropped {where}", ""
    if op == "rename" and isinstance(parent, dict):
        new = draw(_text.filter(lambda k: k not in parent))
        parent[new] = parent.pop(key)
        return doc, f"renamed {where} to {new!r}", ""
    if op == "unknown" and isinstance(parent[key], dict):
        new = draw(_text.filter(lambda k: k not in parent[key]))
        parent[key][new] = draw(_values)
        return doc, f"unknown key {new!r} under {where}", where
    if op == "huge":
        parent[key] = draw(st.sampled_from(HUGE_INTS + HUGE_FLOATS))
    elif op == "nonfinite":
        parent[key] = draw(st.sampled_from(NON_FINITE))
    elif op == "deep":
        value: Any = draw(_scalars)
        for _ in range(draw(st.integers(10, 300))):
            value = [value] if draw(st.booleans()) else {"k": value}
        parent[key] = value
    else:  # retype, and a rename or unknown key where the parent is no mapping
        parent[key] = draw(_values)
    return doc, f"{op} at {where}: {_short(parent[key])}", where


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@st.composite
def mutated(draw, kind: str) -> Case:
    """A shipped document with one to three structural changes, dumped back to YAML."""
    name = draw(st.sampled_from(sorted(SEEDS[kind])))
    doc = copy.deepcopy(yaml.safe_load(SEEDS[kind][name]))
    notes, fields = [], []
    for _ in range(draw(st.integers(1, 3))):
        doc, note, where = draw(_mutation(doc))
        notes.append(note)
        fields.append(where)
    try:
        text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=draw(st.booleans()),
                              width=draw(st.sampled_from([80, 10**6])))
    except (RecursionError, yaml.YAMLError):  # a structure YAML cannot write is no input
        text = "version: 1\n"
    return Case(kind, "mutated", text.encode("utf-8"), f"{name}: " + "; ".join(notes),
                fields[0] if len(fields) == 1 else "")


# -- raw text --------------------------------------------------------------------------------

EMPTY = (b"", b"\n", b"   \n\t\n", b"# only a comment\n", b"---\n", b"--- \n...\n", b"null\n", b"~", b"\xef\xbb\xbf")


@st.composite
def raw_text(draw, kind: str) -> Case:
    """Bytes that are not a valid document: empty, junk, bad UTF-8, broken YAML, bombs, tabs."""
    category = draw(st.sampled_from(["empty", "junk", "utf8", "syntax", "bomb", "duplicate", "tabs", "deep",
                                     "scalar_root"]))
    name = draw(st.sampled_from(sorted(SEEDS[kind])))
    text = SEEDS[kind][name]
    lines = text.splitlines(keepends=True)
    if category == "empty":
        return Case(kind, category, draw(st.sampled_from(EMPTY)), "empty document")
    if category == "junk":
        return Case(kind, category, draw(st.binary(min_size=1, max_size=300)), "random bytes")
    if category == "utf8":
        at = draw(st.integers(0, len(text)))
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80\x80", b"\xf8\x88\x80\x80\x80"]))
        data = text.encode()[:at] + bad + text.encode()[at:]
        return Case(kind, category, data, f"{name}: invalid UTF-8 at byte {at}")
    if category == "syntax":
        at = draw(st.integers(0, len(text)))
        junk = draw(st.sampled_from([":", "[", "{", "]", "}", "'", '"', "- ", ": :", "&", "*x",
                                     "!!python/object:os.system ", "!tag ", "%YAML 9\n", "\n  bad", "? ", "|", ">",
                                     "@", "`", "\x00", "\x07"]))
        if draw(st.booleans()):
            data = text[:at] + junk + text[at:]
        else:
            data = text[:at]  # truncated
        return Case(kind, category, data.encode("utf-8"), f"{name}: {junk!r} at {at}")
    if category == "bomb":
        width, depth = draw(st.integers(2, 12)), draw(st.integers(2, 12))
        doc = ["a0: &a0 [x, x]"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, depth)]
        where = draw(st.sampled_from(["unknown", "value", "recursive"]))
        if where == "recursive":
            body = "version: 1\nname: &r [*r]\n" if draw(st.booleans()) else "version: 1\nx: &r {k: *r}\n"
        elif where == "value" and kind == "spec":  # inside a free-form mapping of a valid spec
            custom = SEEDS["spec"]["examples/custom_trainable/spec.yaml"]
            inner = "".join(f"\n    {line}" for line in doc)
            body = re.sub(r"(?m)^config: \{",
                          "config: {bomb: {" + inner.replace("\n", " ").replace("] ", "], ") + "}, ", custom)
        else:
            body = text + "\n".join(doc) + "\n"
        return Case(kind, category, body.encode(), f"{name}: alias bomb {width}^{depth} ({where})")
    if category == "duplicate":
        candidates = [i for i, line in enumerate(lines) if re.match(r"^\s*[A-Za-z_]+\s*:", line)]
        if not candidates:
            return Case(kind, category, (text + text).encode(), f"{name}: twice")
        i = draw(st.sampled_from(candidates))
        return Case(kind, category, "".join(lines[:i + 1] + [lines[i]] + lines[i + 1:]).encode(),
                    f"{name}: line {i + 1} duplicated")
    if category == "tabs":
        data = re.sub(r"(?m)^( +)", lambda m: "\t" * max(1, len(m.group(1)) // 2), text)
        return Case(kind, category, data.encode(), f"{name}: indentation with tabs")
    if category == "deep":
        depth = draw(st.sampled_from([50, 500, 2000, 20000]))
        opener, closer = draw(st.sampled_from([("[", "]"), ("{a: ", "}")]))
        return Case(kind, category, f"version: 1\nname: {opener * depth}1{closer * depth}\n".encode(),
                    f"nested {depth} deep")
    root = draw(st.sampled_from(["- a\n- b\n", "42\n", "just text\n", "[version, 1]\n", "!!binary aGk=\n", "'x'\n"]))
    return Case(kind, category, root.encode(), "document is not a mapping")


def cases(kinds: tuple[str, ...] = ("spec", "policy")) -> st.SearchStrategy[Case]:
    """Every kind of bad (or accidentally valid) input, for the given commands."""
    return st.sampled_from(kinds).flatmap(lambda kind: st.one_of(mutated(kind), mutated(kind), raw_text(kind)))


# -- running a case and checking the property ------------------------------------------------

class RunStarted(BaseException):  # not an Exception: the CLI turns those into exit 3
    """Raised in place of starting Ray: the spec was accepted."""


@dataclass
class Outcome:
    """What one case did, and which parts of the property it broke (empty = kept)."""

    case: Case
    exit_code: int | None
    stdout: str
    stderr: str
    seconds: float
    started: bool = False  # the spec was valid: the run got as far as starting Ray
    failures: list[str] = field(default_factory=list)
    line_and_field: bool | None = None  # for parsed documents: some message has file:line and a field


@contextlib.contextmanager
def _no_ray() -> Iterator[None]:
    """Stop a run where it would start Ray; never let it touch a cluster."""
    import autofix.tune.runner as runner

    def fit(*args: Any, **kwargs: Any) -> None:
        raise RunStarted("the run would start here")

    saved = runner.ray_session, runner._fit
    runner.ray_session = lambda *a, **k: contextlib.nullcontext()
    runner._fit = fit
    try:
        yield
    finally:
        runner.ray_session, runner._fit = saved


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"case took more than {seconds:g} s")

    if not hasattr(signal, "setitimer"):
        yield
        return
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _ray_running() -> bool:
    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


def run_case(case: Case, workdir: str | Path | None = None, existing_output: bool = False) -> Outcome:
    """Write ``case`` to a file, run the CLI on it in-process, and check the property.

    With ``existing_output`` the run's ``--output`` is an earlier run's (marked, non-empty)
    directory and ``--overwrite`` is passed: a rejected input must leave it untouched.
    """
    from autofix.cli import main
    from autofix.tune.rundir import MARKER

    with contextlib.ExitStack() as stack:
        root = Path(workdir) if workdir else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        root.mkdir(parents=True, exist_ok=True)
        path = root / ("spec.yaml" if case.kind == "spec" else "policy.yaml")
        path.write_bytes(case.data)
        out = root / "out"
        argv = (["policies", "check", str(path)] if case.kind == "policy"
                else ["run", str(path), "--output", str(out), "-q"])
        if existing_output and case.kind == "spec":
            out.mkdir()
            (out / MARKER).write_text("{}")
            (out / "keep.txt").write_text("precious")
            argv.append("--overwrite")
        ray_before, sys_path = _ray_running(), list(sys.path)
        stdout, stderr = io.StringIO(), io.StringIO()
        code: int | None = None
        started = False
        crash = ""
        t0 = time.perf_counter()
        try:
            with _no_ray(), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), \
                    _time_limit(CASE_TIMEOUT_S):
                code = main(argv)
        except RunStarted:
            started = True
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:  # noqa: BLE001 - any escape is what the fuzzer looks for
            import traceback

            crash = "".join(traceback.format_exception(exc))
        finally:
            sys.path[:] = sys_path  # load_spec adds the spec's folder; do not let 1,000 pile up
        seconds = time.perf_counter() - t0
        outcome = Outcome(case, code, stdout.getvalue(), stderr.getvalue() + crash, seconds, started)
        check_case(outcome, path, out, existing_output and case.kind == "spec", ray_before)
        return outcome


def check_case(o: Outcome, path: Path, out: Path, existing_output: bool, ray_before: bool) -> None:
    """Fill ``o.failures`` with every part of the property the case broke."""
    text = o.stdout + o.stderr
    if "Traceback" in text:
        o.failures.append("traceback: " + text.strip().splitlines()[-1][:200])
    if not ray_before and _ray_running():
        o.failures.append("Ray was started")
    if o.started:
        return  # accepted spec: output written on purpose, Ray stubbed out
    if o.exit_code == 0:
        if o.case.kind == "spec":
            o.failures.append("exit 0 without reaching the run")
        return
    if o.exit_code != 2:
        o.failures.append(f"exit code {o.exit_code}, expected 2")
        return
    errors = [line for line in o.stderr.splitlines() if line.startswith("autofix: error: ")]
    if len(errors) != len(o.stderr.splitlines()):
        o.failures.append("a message spans several lines (or stderr has other lines)")
    if not errors:
        o.failures.append("exit 2 without an 'autofix: error:' line")
    elif not any(str(path) in line for line in errors):
        o.failures.append(f"no message names the file {path}")
    if existing_output:
        if not (out / "keep.txt").is_file() or (out / "keep.txt").read_text() != "precious":
            o.failures.append("the existing --output directory was overwritten")
    elif out.exists():
        o.failures.append("the --output directory was created")
    located = re.compile(re.escape(str(path)) + r":\d+: [^:]+: ")
    o.line_and_field = any(located.search(line) for line in errors)
