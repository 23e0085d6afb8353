"""Every output that the README and the docs quote is re-run here and compared, so a quoted number cannot go
stale.

A quoted output is marked by the command that produces it, on the line before its block:

* in Markdown, ``<!-- numbers: COMMAND -->`` followed by a fenced block;
* in reStructuredText, ``.. numbers: COMMAND`` (a comment) followed by a ``::`` literal block.

A command that takes more than a few seconds (a full example run: up to ~3 minutes) is marked
``.. numbers (slow): COMMAND`` (or ``<!-- numbers (slow): COMMAND -->``): its test carries
``pytest.mark.slow`` and runs with ``-m slow``.

``COMMAND`` is ``pyro-ebm ...``, ``python examples/NAME.py ...`` (run with ``--out`` set to a temporary
folder) or ``python benchmarks/NAME.py ...`` (with ``--json`` in a temporary folder), from the repository
root. Every line of the quoted block must be a line of the output:
the same words, and the same numbers to within two units of the last digit the block shows (the runs are
seeded and single-threaded: on one machine the numbers are identical; the slack is for another CPU's
rounding). A quoted line that ends in ``...`` must be the start of an output line: the rest of that line
(a run time, which changes from run to run) is left out. Each command runs once, however many pages quote
it.
"""

import functools
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"[-+]?\d+\.\d+|[-+]?\d+")
MD_MARK = re.compile(r"<!--\s*numbers(\s*\(slow\))?:\s*(.+?)\s*-->")
RST_MARK = re.compile(r"^\.\.\s+numbers(\s*\(slow\))?:\s*(.+?)\s*$")


def _md_blocks(text):
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = MD_MARK.search(line)
        if not m:
            continue
        j = i + 1
        while not lines[j].startswith("```"):
            j += 1
        k = j + 1
        while not lines[k].startswith("```"):
            k += 1
        yield m.group(2), bool(m.group(1)), [ln for ln in lines[j + 1:k] if ln.strip()]


def _rst_blocks(text):
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = RST_MARK.match(line)
        if not m:
            continue
        j = i + 1
        while not lines[j].rstrip().endswith("::"):
            j += 1
        block, k = [], j + 1
        while k < len(lines) and (not lines[k].strip() or lines[k].startswith("    ")):
            block.append(lines[k].strip())
            k += 1
        yield m.group(2), bool(m.group(1)), [ln for ln in block if ln]


def quoted_blocks():
    """``[(page, command, lines, slow)]`` for every marked block of the README and the docs."""
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.rst"))]:
        if "_build" in page.parts:
            continue
        text = page.read_text()
        blocks = _md_blocks(text) if page.suffix == ".md" else _rst_blocks(text)
        found += [(str(page.relative_to(ROOT)), cmd, lines, slow) for cmd, slow, lines in blocks]
    return found


@functools.lru_cache(maxsize=None)
def run_command(command: str, out: str) -> str:
    words = command.split()
    if words[0] == "pyro-ebm":
        argv = [sys.executable, "-m", "pyro_ebm.cli", *words[1:]]
    elif words[0] == "python" and words[1].startswith(("examples/", "benchmarks/")):
        argv = [sys.executable, *words[1:]]
    else:
        raise ValueError(f"a quoted output's command must start with 'pyro-ebm', 'python examples/' or "
                         f"'python benchmarks/', got {command!r}")
    where = ["--json", os.path.join(out, "result.json")] if words[1:2] and words[1].startswith("benchmarks/") \
        else ["--out", out]
    env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    done = subprocess.run(argv + where, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout + done.stderr


def _shape(line):
    return " ".join(NUMBER.sub("#", line).split())


def _numbers_match(quoted, produced):
    a, b = NUMBER.findall(quoted), NUMBER.findall(produced)
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        decimals = len(x.split(".")[1]) if "." in x else 0
        if not math.isclose(float(x), float(y), rel_tol=0, abs_tol=2 * 10 ** -decimals + 1e-12):
            return False
    return True


def _head(quoted, produced):
    """A quoted line that ends in ``...`` quotes the start of an output line (the rest, e.g. a run time
    that changes from run to run, is left out): ``(quoted without the ..., the output line's start)``."""
    head = quoted[:-3].rstrip() if quoted.endswith("...") else ""
    if not head:
        return quoted, produced
    return head, " ".join(produced.split()[:len(head.split())])


def _reproduces(quoted, produced):
    q, p = _head(quoted, produced)
    return _shape(q) == _shape(p) and _numbers_match(q, p)


def mismatches(quoted_lines, output):
    """The quoted lines that no output line reproduces (same words, numbers within the slack)."""
    produced = [ln.strip() for ln in output.splitlines() if ln.strip()]
    missing = []
    for q in quoted_lines:
        if not any(_reproduces(q, p) for p in produced):
            close = [p for p in produced if _shape(_head(q, p)[0]) == _shape(_head(q, p)[1])]
            missing.append(f"  quoted:   {q}\n  produced: "
                           f"{close[0] if close else '(no line of that shape)'}")
    return missing


def test_the_comparison_catches_a_stale_number_and_accepts_rounding():
    out = "held-out NLL (nats/point): EBM 1.7219   true density 1.708\nlog Z: 2.0304"
    assert not mismatches(["held-out NLL (nats/point): EBM 1.722   true density 1.708"], out.replace("1.7219", "1.722"))
    assert not mismatches(["log Z: 2.0305"], out)  # one unit of the last digit
    assert mismatches(["held-out NLL (nats/point): EBM 1.783   true density 1.708"], out)
    assert mismatches(["log Z: AIS 2.0304"], out)  # other words
    table = "eight_gaussians      4000     1.817     1.708     1.733     52.2"
    assert not mismatches(["eight_gaussians  4000  1.817  1.708  1.733  ..."], table)  # the time left out
    assert mismatches(["eight_gaussians  4000  1.801  1.708  1.733  ..."], table)
    assert mismatches(["eight_gaussians  4000  1.817  1.708  1.733"], table)  # without ...: the whole line


def test_the_readme_and_the_docs_mark_what_they_quote():
    pages = {page for page, _, _, _ in quoted_blocks()}
    assert {"README.md", "docs/demo.rst", "docs/examples/diagnose_negatives.rst"} <= pages
    for page, command, lines, _ in quoted_blocks():
        assert lines, f"{page}: the block after 'numbers: {command}' is empty"


def _params():
    """One test per marked block; a ``(slow)`` mark makes it a ``pytest.mark.slow`` test."""
    params, seen = [], {}
    for page, command, lines, slow in quoted_blocks():
        name = f"{page}-{command}"
        seen[name] = seen.get(name, 0) + 1
        params.append(pytest.param(page, command, lines, marks=[pytest.mark.slow] if slow else [],
                                   id=name if seen[name] == 1 else f"{name}-{seen[name]}"))
    return params


@pytest.mark.parametrize("page,command,lines", _params())
def test_quoted_output_is_what_the_command_prints(page, command, lines, tmp_path_factory):
    out = str(tmp_path_factory.getbasetemp() / re.sub(r"\W+", "_", command))
    missing = mismatches(lines, run_command(command, out))
    assert not missing, f"{page} quotes output of `{command}` that it no longer prints:\n" + "\n".join(missing)
