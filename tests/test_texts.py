"""Texts in the user's language: the German catalog covers every template the code uses, with the same
placeholders; the request's Accept-Language picks the language."""

import ast
from pathlib import Path

import pytest
from pydantic import BaseModel, Field, ValidationError

import matelix
from matelix.texts import kept, language, negotiate, placeholders, pydantic_message, said, speaking, tr
from matelix.texts_de import GERMAN, PYDANTIC_GERMAN

SRC = Path(matelix.__file__).parent


def templates_in_code() -> dict[str, str]:
    """Every `tr("...")` and `kept("...")` template in the package, with where it is used; a template that is
    not a literal string could not be looked up, so it fails the test."""
    found: dict[str, str] = {}
    for path in SRC.rglob("*.py"):
        if path == SRC / "texts.py":  # says stored templates again (`said`): not a message of its own
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("tr", "kept"):
                arg = node.args[0]
                assert isinstance(arg, ast.Constant) and isinstance(arg.value, str), \
                    f"{path}:{node.lineno}: tr() and kept() need a literal template"
                found.setdefault(arg.value, f"{path.relative_to(SRC)}:{node.lineno}")
    return found


def test_every_template_in_the_code_has_its_german_text():
    used = templates_in_code()
    assert len(used) > 50
    missing = {where: template for template, where in used.items() if template not in GERMAN}
    assert not missing, missing
    assert not set(GERMAN) - set(used), "German texts no code uses any more"


@pytest.mark.parametrize("english", sorted(GERMAN))
def test_german_text_fills_the_same_placeholders(english):
    assert placeholders(GERMAN[english]) == placeholders(english)


def test_tr_speaks_the_current_language_and_english_outside_a_request():
    template = "duplicate id {id!r} (first used in row {first}); replies link to the first"
    assert language() == "en"
    assert tr(template, id="7", first=3) == "duplicate id '7' (first used in row 3); replies link to the first"
    with speaking("de"):
        assert tr(template, id="7", first=3) == "doppelte id '7' (zuerst in Zeile 3); Antworten beziehen sich auf die erste"
        assert tr("a text without a German entry {n}", n=1) == "a text without a German entry 1"
    with speaking("fr"):
        assert language() == "en"


@pytest.mark.parametrize(("header", "expected"), [
    ("de-DE,de;q=0.9,en;q=0.8", "de"), ("en-US,en;q=0.9,de;q=0.8", "en"), ("fr-FR,de;q=0.5", "de"),
    ("fr, it", "en"), ("", "en"), ("de;q=0.2, en;q=0.9", "en"), ("de;q=oops", "en"), ("*", "en"), ("DE", "de"),
])
def test_accept_language_picks_the_preferred_supported_language(header, expected):
    assert negotiate(header) == expected


class Form(BaseModel):
    steps: int = Field(gt=0)
    name: str = Field(min_length=2)


def test_pydantic_errors_in_german_from_their_type_and_context():
    with pytest.raises(ValidationError) as caught:
        Form(steps=0, name="x")
    errors = caught.value.errors()
    assert [pydantic_message(e) for e in errors] == [e["msg"] for e in errors]  # English: pydantic's own
    with speaking("de"):
        assert [pydantic_message(e) for e in errors] == ["Muss größer als 0 sein", "Mindestens 2 Zeichen"]
    assert {"missing", "greater_than", "less_than_equal", "literal_error"} <= set(PYDANTIC_GERMAN)


def test_a_kept_message_is_said_later_in_the_reader_language():
    stored = {**kept("worker ended without a final state (exit code {code})", code=-9), "last_lines": ["x"]}
    assert stored["message"] == "worker ended without a final state (exit code -9)"
    assert said(stored) == {"message": "worker ended without a final state (exit code -9)", "last_lines": ["x"]}
    with speaking("de"):
        assert said(stored) == {"message": "der Worker endete ohne Endzustand (Exit-Code -9)", "last_lines": ["x"]}
        plain = {"message": "RuntimeError: boom", "last_lines": []}
        assert said(plain) == plain and said(None) is None  # a worker's own exception text stays as raised
