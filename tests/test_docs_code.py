"""Every Python code block of the docs and the README runs, and asserts what its prose says.

A page's Python blocks run in order, in one fresh namespace (a later block may use the names of an earlier
one), as one test per page: with fixed seeds (torch, Pyro, numpy), ``MPLBACKEND=Agg`` and a temporary
working directory, so that nothing is written into the repository.

Which blocks are Python is decided by their directive:

* reStructuredText: ``.. code-block:: python`` (also ``code``, ``sourcecode``, ``python3``, ``py``),
  ``.. testcode::``, and ``pycon`` blocks (their ``>>>`` and ``...`` lines);
* Markdown: fenced blocks opened with ```` ```python ````.

A bare ``::`` literal block says nothing about its language, so it is allowed only for a quoted output
marked ``.. numbers:`` or ``.. numbers (slow):`` (checked by ``tests/test_docs_numbers.py``); any other
block must name its language.

A page with Python blocks must assert something in them, unless it is in ``NO_ASSERT`` with the reason.
"""

import re
import socket
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PYTHON = {"python", "python3", "py", "pycon"}
RST_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+(code-block|code|sourcecode|testcode)::\s*(\S*)\s*$")
MD_FENCE = re.compile(r"^```\s*(\S*)\s*$")
NUMBERS_MARK = re.compile(r"^\.\.\s+numbers(\s*\(slow\))?:")  # the markers of tests/test_docs_numbers.py

# Pages whose Python blocks assert nothing, with the reason.
NO_ASSERT = {
    # A script for torchrun. Here it runs as one process would under torchrun; what the page says about
    # several processes (one shard and its own chains per rank, averaged gradients, one checkpoint that
    # resumes on any number of processes) is asserted by tests/test_distributed.py with two gloo processes.
    "docs/distributed.rst": "a torchrun script; its multi-process claims are tested in test_distributed.py",
}

# Pages too slow for the default run, with the reason.
SLOW = {
    # ml_fit's default recipe, which the page is about: 4000 steps and five sampler probes of 16 chains x
    # 400 draws (the probes alone take tens of seconds on one core); its verdict needs the full run.
    "docs/ml.rst": "the default maximum-likelihood recipe, trained to the truth",
    # The script trains for 5000 steps on batches of 1024 with the same probes (about ten minutes on one core).
    "docs/distributed.rst": "a full-size training script",
}


def _indent(line):
    return len(line) - len(line.lstrip())


def _indented_block(lines, start, base):
    """The lines after ``start`` indented deeper than ``base``, dedented, with blank lines in front so that
    line numbers are the page's; and the index after them."""
    k = start
    while k < len(lines) and lines[k].strip() and lines[k].lstrip().startswith(":") and _indent(lines[k]) > base:
        k += 1                                           # directive options
    first, body = k, []
    while k < len(lines) and (not lines[k].strip() or _indent(lines[k]) > base):
        body.append(lines[k])
        k += 1
    while body and not body[-1].strip():
        body.pop()
    depth = min((_indent(ln) for ln in body if ln.strip()), default=0)
    return "\n" * first + "\n".join(ln[depth:] for ln in body), k


def _pycon(text):
    """The Python source of a console session: its ``>>>`` and ``...`` lines (the others become blank)."""
    return "\n".join(ln[4:] if ln.startswith((">>>", "...")) else "" for ln in text.splitlines())


def rst_blocks(text):
    """``[(line, language, source)]`` of every code block of a reStructuredText page; bare ``::`` blocks
    get the language ``None`` and, after a ``.. numbers:`` marker, ``"numbers"``."""
    lines = text.splitlines()
    blocks, i, marked = [], 0, False
    while i < len(lines):
        line = lines[i]
        if NUMBERS_MARK.match(line):
            marked = True
        m = RST_DIRECTIVE.match(line)
        if m:
            language = "python" if m.group(2) == "testcode" else (m.group(3) or None)
            source, end = _indented_block(lines, i + 1, len(m.group(1)))
            if language == "pycon":
                source = _pycon(source)
            blocks.append((i + 1, language, source))
            i = end
            continue
        if line.rstrip().endswith("::") and not line.lstrip().startswith(".."):
            source, end = _indented_block(lines, i + 1, _indent(line))
            blocks.append((i + 1, "numbers" if marked else None, source))
            marked = False
            i = end
            continue
        i += 1
    return blocks


def md_blocks(text):
    """``[(line, language, source)]`` of every fenced block of a Markdown page."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = MD_FENCE.match(lines[i])
        if m:
            k = i + 1
            while not lines[k].startswith("```"):
                k += 1
            blocks.append((i + 1, m.group(1).lower() or None, "\n" * (i + 1) + "\n".join(lines[i + 1:k])))
            i = k
        i += 1
    return blocks


def pages():
    found = [ROOT / "README.md"] + sorted(p for p in (ROOT / "docs").rglob("*.rst") if "_build" not in p.parts)
    return [str(p.relative_to(ROOT)) for p in found]


def blocks_of(page):
    text = (ROOT / page).read_text()
    return md_blocks(text) if page.endswith(".md") else rst_blocks(text)


def python_blocks(page):
    return [(line, source) for line, language, source in blocks_of(page) if language in PYTHON]


PYTHON_PAGES = [page for page in pages() if python_blocks(page)]


def _param(page):
    marks = [pytest.mark.slow] if page in SLOW else []
    return pytest.param(page, id=page, marks=marks)


def test_parser_reads_every_kind_of_block():
    page = """Text::

    x = 1

.. numbers: some command

::

    output

.. code-block:: python
   :caption: two lines

    a = 1

    b = 2

.. code-block:: pycon

    >>> c = 3
    >>> c
    3

.. testcode::

    d = 4

.. code-block:: console

    $ ls
"""
    blocks = rst_blocks(page)
    assert [(language, source.strip()) for _, language, source in blocks] == [
        (None, "x = 1"), ("numbers", "output"), ("python", "a = 1\n\nb = 2"), ("pycon", "c = 3\nc"),
        ("python", "d = 4"), ("console", "$ ls")]
    assert blocks[2][2].splitlines()[page.splitlines().index("    a = 1")] == "a = 1"      # the page's line numbers
    md = "text\n\n```python\nx = 1\n```\n\n```bash\nls\n```\n"
    assert [(language, source.strip()) for _, language, source in md_blocks(md)] == [("python", "x = 1"), ("bash", "ls")]


def test_blocks_name_their_language():
    bare = [f"{page}:{line}" for page in pages() for line, language, _ in blocks_of(page)
            if page.endswith(".rst") and language is None]
    assert not bare, f"literal blocks without a language (use .. code-block:: python / console / text): {bare}"


def test_pages_with_code_assert_their_claims():
    silent = [page for page in PYTHON_PAGES if page not in NO_ASSERT
              and not any(re.search(r"^\s*assert\b", src, re.M) for _, src in python_blocks(page))]
    assert not silent, f"pages whose Python blocks assert nothing: {silent}"
    assert set(NO_ASSERT) <= set(PYTHON_PAGES), "NO_ASSERT names a page without Python blocks"
    assert set(SLOW) <= set(PYTHON_PAGES), "SLOW names a page without Python blocks"


@pytest.mark.parametrize("page", [_param(p) for p in PYTHON_PAGES])
def test_page_code_runs(page, tmp_path, monkeypatch):
    import numpy as np
    import pyro
    import torch

    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)
    # what torchrun gives a single process, for the scripts that start a process group
    for name, value in [("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1"),
                        ("MASTER_PORT", str(_free_port()))]:
        monkeypatch.setenv(name, value)
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    np.random.seed(0)
    pyro.clear_param_store()
    namespace = {"__name__": "__main__"}
    try:
        with warnings.catch_warnings():
            for _, source in python_blocks(page):
                exec(compile(source, str(ROOT / page), "exec"), namespace)
    finally:
        pyro.clear_param_store()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close("all")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
