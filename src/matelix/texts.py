"""Texts a user reads (error messages, dataset findings) in the user's language: English or German.

A message is written in English with named placeholders, `tr("no dataset {name!r} under datasets/", name=n)`;
the English template is the key of the German catalog (`texts_de.GERMAN`, same placeholders), so the code
reads as English and a message without a German entry still says something. The language is the
request's: the dashboard sends its UI language as `Accept-Language`, `LanguageMiddleware` keeps it in a
context variable for the request (server/middleware.py; thread-pool calls inherit it), and everything else — the CLI, the training
worker, API clients that send no German preference — gets English.

Hand-written rather than stdlib `gettext`: that needs compiled `.mo` catalogs (a build step and binary files
in the repository) and a process-wide installed language, while a request picks its own.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from string import Formatter

from matelix.texts_de import GERMAN, PYDANTIC_GERMAN

LANGUAGES = ("en", "de")
_language: ContextVar[str] = ContextVar("matelix_language", default="en")


def language() -> str:
    return _language.get()


@contextlib.contextmanager
def speaking(lang: str):
    """Texts made inside the block are in `lang` (a supported language; anything else means English)."""
    token = _language.set(lang if lang in LANGUAGES else "en")
    try:
        yield
    finally:
        _language.reset(token)


def tr(template: str, /, **values) -> str:
    """`template` filled with `values`, in the current language."""
    if _language.get() == "de":
        template = GERMAN.get(template, template)
    return template.format(**values)


def kept(template: str, /, **values) -> dict:
    """A message to store on disk (an error in status.json) and say later in the reader's language: the
    English text under "message", the template and its values (JSON-safe) under "text"."""
    return {"message": template.format(**values), "text": {"template": template, "values": values}}


def said(stored: dict | None) -> dict | None:
    """A stored message (from `kept`) in the current language, without its template; others as they are."""
    if not isinstance(stored, dict) or not isinstance(stored.get("text"), dict):
        return stored
    text = stored["text"]
    out = {key: value for key, value in stored.items() if key != "text"}
    try:
        out["message"] = tr(text["template"], **text.get("values", {}))
    except (KeyError, IndexError, ValueError, TypeError):
        pass  # a template another version wrote: its English message stands
    return out


def pydantic_message(error: dict) -> str:
    """A pydantic validation error's text in the current language (its `type` and `ctx` say the same thing
    in German, the recipe of pydantic's "Customizing error messages" docs)."""
    german = PYDANTIC_GERMAN.get(error.get("type", "")) if _language.get() == "de" else None
    try:
        return german.format(**error.get("ctx", {})) if german else str(error.get("msg"))
    except (KeyError, IndexError):
        return str(error.get("msg"))


def placeholders(template: str) -> set[str]:
    """The names a template fills (`{row}`, `{name!r}` -> {"row", "name"})."""
    return {name for _, name, _, _ in Formatter().parse(template) if name}


def negotiate(accept_language: str) -> str:
    """The supported language an `Accept-Language` header prefers most ("de-DE,de;q=0.9,en;q=0.8" -> "de");
    English when it names none of them."""
    best, best_q = "en", 0.0
    for part in accept_language.split(","):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        try:
            q = float(params.strip()[2:]) if params.strip().startswith("q=") else 1.0
        except ValueError:
            continue
        if primary in LANGUAGES and q > best_q:
            best, best_q = primary, q
    return best

