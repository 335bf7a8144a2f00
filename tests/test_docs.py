"""The README's key reference is the one the config declarations produce."""

from pathlib import Path

from ctxserve import process
from ctxserve.config import reference_markdown

README = Path(__file__).parent.parent / "README.md"


def test_readme_embeds_the_current_key_reference() -> None:
    assert reference_markdown().rstrip("\n") in README.read_text(), (
        "README.md's key reference is out of date: replace it with `python -m ctxserve.config`")


def test_readme_embeds_the_current_table_of_process_globals() -> None:
    assert process.reference_markdown().rstrip("\n") in README.read_text(), (
        "README.md's \"What ctxserve changes in your interpreter\" is out of date: "
        "replace it with `python -m ctxserve.process`")


def test_readme_starts_with_the_demo_and_test_commands() -> None:
    blocks = README.read_text().split("```bash\n")[1:3]
    commands = [block.split("\n```")[0] for block in blocks]
    assert "ctxserve serve deploy/ctxserve.toml" in commands[0]
    assert "pytest" in commands[1]
    ci = (README.parent / ".ci" / "run").read_text()
    assert commands[1] in ci, ".ci/run must call exactly the README's test command"

