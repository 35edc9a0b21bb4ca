"""The docs a newcomer navigates: README.md is the front door (at most 200 lines, a link to every
page), docs/ holds one page per topic. `make docs` (mkdocs, strict) checks the links inside docs/;
this checks what mkdocs cannot see: the links of README.md and of the pointer files left in infra/,
and that docs/configuration.md documents exactly the TOKENMINT_* variables the code reads."""

from __future__ import annotations

import ast
import html
import re
from pathlib import Path

import markdown

from support.template import ROOT, load_template

README = ROOT / "README.md"
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"
CODE = ROOT / "functions" / "tokenmint"
VARIABLE = re.compile(r"TOKENMINT_[A-Z0-9_]*[A-Z0-9]")
# [text](target) and ![alt](target), with an optional "title"; targets hold no spaces here.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
CODE_SPAN = re.compile(r"(`+).+?\1", re.S)


def variables_read_by_the_code() -> set[str]:
    """Every TOKENMINT_* name the code passes around as a string of its own: what it reads from the
    environment (``env.get("TOKENMINT_…")``, ``_int(env, "TOKENMINT_…", …)``), not names that only
    appear inside a message or a comment."""
    names = set()
    for path in CODE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and VARIABLE.fullmatch(node.value):
                names.add(node.value)
    return names


def variables_set_by_the_template() -> set[str]:
    """The TOKENMINT_* variables template.yaml puts in the functions' environments (Globals and each function)."""
    template = load_template()
    environments = [template.get("Globals", {}).get("Function", {}).get("Environment", {})]
    environments += [resource.get("Properties", {}).get("Environment", {})
                     for resource in template["Resources"].values()
                     if resource.get("Type") == "AWS::Serverless::Function"]
    return {name for environment in environments for name in environment.get("Variables", {})
            if name.startswith("TOKENMINT_")}


def prose(markdown_text: str) -> str:
    """The text outside code fences and code spans, where links live."""
    return CODE_SPAN.sub("", FENCE.sub("", markdown_text))


def relative_links(path: Path) -> list[str]:
    """The links of a Markdown file that point inside the repository (no scheme, no mailto)."""
    return [target for target in LINK.findall(prose(path.read_text(encoding="utf-8")))
            if not re.match(r"[a-z][a-z0-9+.-]*:", target, re.I)]


def anchors(path: Path) -> set[str]:
    """The ids a Markdown page's headings get, rendered as mkdocs renders them (Python-Markdown's toc)."""
    rendered = markdown.markdown(path.read_text(encoding="utf-8"), extensions=["toc", "tables", "fenced_code"])
    return {html.unescape(anchor) for anchor in re.findall(r'\bid="([^"]+)"', rendered)}


def broken_links(path: Path) -> list[str]:
    broken = []
    for link in relative_links(path):
        target, _, fragment = link.partition("#")
        resolved = (path.parent / target).resolve() if target else path
        if not resolved.exists():
            broken.append(f"{link}: no such file")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            broken.append(f"{link}: {resolved.name} has no heading with that anchor")
    return broken


def test_every_variable_the_code_reads_is_documented_and_no_other():
    # Given the variables the code reads and the configuration page
    read = variables_read_by_the_code()
    page = CONFIGURATION.read_text(encoding="utf-8")
    rows = set(re.findall(rf"^\| `({VARIABLE.pattern})` \|", page, re.M))

    # Then each one has its own row in the page's tables, and the page names no variable the code does not read
    assert len(read) >= 20, "the code's variables were not found: did the package move?"
    assert sorted(read - rows) == [], "read by the code but missing from docs/configuration.md"
    assert sorted(set(VARIABLE.findall(page)) - read) == [], "in docs/configuration.md but read by no code"


def test_the_template_sets_only_variables_the_code_reads():
    # Given the functions' environments in template.yaml
    # Then each TOKENMINT_* variable there is one the code reads (and so one the configuration page documents)
    assert sorted(variables_set_by_the_template() - variables_read_by_the_code()) == []


def test_every_relative_link_in_the_readme_and_the_infra_pointers_resolves():
    # Given README.md (outside mkdocs' docs_dir) and the pointer files left in infra/
    pages = [README, *sorted((ROOT / "infra").glob("*.md"))]

    # Then every relative link names a file that exists, and a heading of it when it names an anchor
    assert relative_links(README), "README.md links nothing: the link pattern no longer matches"
    assert {str(page.relative_to(ROOT)): broken_links(page) for page in pages} == {
        str(page.relative_to(ROOT)): [] for page in pages}


def test_the_readme_is_a_front_door_to_every_page():
    # Given README.md and the pages in docs/
    linked = {(README.parent / link.partition("#")[0]).resolve() for link in relative_links(README)}
    pages = {page.resolve() for page in DOCS.glob("*.md")}

    # Then a newcomer reaches every page in one click, from a README of at most 200 lines
    assert sorted(str(page.relative_to(ROOT)) for page in pages - linked) == []
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 200
