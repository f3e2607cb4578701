"""Every Python block of README.md runs as written, each in a fresh interpreter.

The blocks are read from the README itself, so the text and the test cannot drift,
and a section added later is tested from the moment it is written. Each block runs
in its own subprocess, as a reader would paste it: a temporary working directory
(files the block writes land there), a temporary ``KERAS_SPHERE_CACHE`` and
``KERAS_HOME``, and no ``KERAS_BACKEND`` (so a block that imports keras before
keras_sphere fails here as it does for a reader whose Keras defaults to TensorFlow).

Only fenced ``python`` blocks run (indented ones inside lists too); ``bash`` blocks,
such as the install and test commands at the top, do not. A block right after the
line ``<!-- test: large -->`` needs a large preset or a long run and runs only with
``--run_large``; keep that set small.
"""

import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
LARGE_MARKER = "<!-- test: large -->"
# Seconds per block: the slowest default block (a short data-parallel fit) takes
# about a minute on 2 busy cores.
TIMEOUT_S = 900

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<language>[\w+-]*)[ \t]*$")


def python_blocks(text: str) -> list[dict]:
    """The fenced ``python`` blocks of a Markdown text, in order.

    Returns:
        One dict per block: ``code`` (dedented), ``line`` (1-based line of the
        opening fence), ``heading`` (the nearest heading above it) and ``large``
        (the line before the fence is `LARGE_MARKER`).
    """
    lines = text.splitlines()
    blocks, heading, index = [], "top", 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        opening = _FENCE.match(line)
        if not opening:
            index += 1
            continue
        indent, language = opening.group("indent"), opening.group("language")
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError(f"README.md line {index + 1}: a ``` fence is not closed.")
        if language == "python":
            body = [
                row[len(indent) :] if row.startswith(indent) else row
                for row in lines[index + 1 : end]
            ]
            previous = next(
                (row.strip() for row in reversed(lines[:index]) if row.strip()), ""
            )
            blocks.append(
                {
                    "code": textwrap.dedent("\n".join(body)) + "\n",
                    "line": index + 1,
                    "heading": heading,
                    "large": previous == LARGE_MARKER,
                }
            )
        index = end + 1
    return blocks


def _block_id(block: dict) -> str:
    words = re.findall(r"[a-z0-9]+", block["heading"].lower())
    return f"line{block['line']}-{'-'.join(words[:4]) or 'top'}"


def _params():
    params = []
    for block in python_blocks(README.read_text(encoding="utf-8")):
        marks = [pytest.mark.large] if block["large"] else []
        params.append(pytest.param(block, id=_block_id(block), marks=marks))
    return params


@pytest.mark.parametrize("block", _params())
def test_readme_block_runs(block, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env.update(
        KERAS_SPHERE_CACHE=str(tmp_path / "cache"),
        KERAS_HOME=str(tmp_path / "keras_home"),
        MPLBACKEND="Agg",
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    script = workdir / "readme_block.py"
    script.write_text(block["code"], encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert result.returncode == 0, (
        f"README.md block at line {block['line']} ({block['heading']}) failed:\n"
        f"{block['code']}\n--- stderr (end) ---\n{result.stderr[-4000:]}"
    )


def test_blocks_are_found_with_their_markers():
    text = textwrap.dedent(
        """\
        # Title

        ```bash
        pip install .
        ```

        ## Section

        ```python
        import keras_sphere
        ```

        - A list item:

          ```python
          x = 1
            # keeps relative indentation
          ```

        <!-- test: large -->

        ```python
        y = 2
        ```
        """
    )
    blocks = python_blocks(text)
    assert [b["line"] for b in blocks] == [9, 15, 22]
    assert blocks[0]["code"] == "import keras_sphere\n"
    assert blocks[1]["code"] == "x = 1\n  # keeps relative indentation\n"
    assert [b["large"] for b in blocks] == [False, False, True]
    assert [b["heading"] for b in blocks] == ["Section"] * 3
    with pytest.raises(ValueError, match="not closed"):
        python_blocks("```python\nx = 1\n")


def test_readme_has_python_blocks():
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 6
    # The large set stays small: most blocks run in the default test run.
    assert sum(b["large"] for b in blocks) <= 2
