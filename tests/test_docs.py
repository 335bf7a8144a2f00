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


def test_docs_compatibility_md_shows_every_pinned_corpus_package_at_its_pin() -> None:
    """``pytest -m compat`` writes the doc; between runs, the pins and the doc agree."""
    import tomllib

    root = README.parent
    extra = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    text = (root / "docs" / "compatibility.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| **")]
    assert len(rows) >= 10, "docs/compatibility.md lists fewer than ten apps"
    for requirement in extra["compat"]:
        name, _, version = requirement.partition("==")
        assert version, f"pyproject.toml: the compat extra pins every package with ==: {requirement!r}"
        assert f"{name} {version}" in text, (
            f"docs/compatibility.md does not show {name} {version}: run `pytest -m compat` and commit it")
