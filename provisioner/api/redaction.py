"""What the server says, made fit to print or keep: no API key in it, and one short line.

A server's error body may echo the request it refused, headers included (``Authorization:
Bearer ti_...``); an error page may be a whole HTML document. Everything the server says goes
through a ``Redactor`` before it is printed or stored: the key (whole, or any long start of it),
any ``Authorization`` value and any ``Bearer`` token are replaced by ``[redacted]``. Pure: no I/O.
"""

from __future__ import annotations

import html
import json
import re
from urllib.parse import quote

REDACTED = "[redacted]"
MESSAGE_LIMIT = 200  # characters of a server's message kept in an error
KEY_PREFIX = 12  # a start of the key this long or longer, echoed cut short, is redacted too

BEARER = re.compile(r"(?i)\b(bearer)(\s+)[^\s\"',;}\]\)]+")
# "Authorization: x", "authorization=x", "'Authorization': 'x'", "\"authorization\":\"x\"": the value up to the
# end of its quotes or line.
AUTHORIZATION = re.compile(r"(?i)(authorization[\"']?\s*[:=,]\s*[\"']?)(?!\[redacted\])[^\"'\r\n,}\]]+")
TITLE = re.compile(r"(?is)<title[^>]*>(.*?)</title>")
TAG = re.compile(r"(?s)<[^>]*>")
SCRIPT_OR_STYLE = re.compile(r"(?is)<(script|style)\b.*?</\1\s*>")


class Redactor:
    def __init__(self, secrets: list[str]):
        forms = set()
        for secret in secrets:
            if secret:
                forms |= {secret, quote(secret, safe=""), html.escape(secret)}
        self._secrets = sorted(forms, key=len, reverse=True)
        # As they may appear in a raw JSON body (a quote or backslash in a key is escaped there).
        self._raw = [form.encode() for form in forms] + [json.dumps(form)[1:-1].encode() for form in forms]

    def text(self, text: str) -> str:
        """``text`` with every secret, Authorization value and Bearer token replaced."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
            text = self._key_starts(text, secret)
        text = BEARER.sub(lambda match: f"{match[1]}{match[2]}{REDACTED}", text)
        return AUTHORIZATION.sub(lambda match: f"{match[1]}{REDACTED}", text)

    def _key_starts(self, text: str, secret: str) -> str:
        """A key echoed cut short still gives most of it away: any start of it KEY_PREFIX long or more."""
        if len(secret) <= KEY_PREFIX:
            return text
        prefix = secret[:KEY_PREFIX]
        start = text.find(prefix)
        while start >= 0:
            end = start + KEY_PREFIX
            while end < len(text) and end - start < len(secret) and text[end] == secret[end - start]:
                end += 1
            text = text[:start] + REDACTED + text[end:]
            start = text.find(prefix, start + len(REDACTED))
        return text

    def message(self, text: str, limit: int = MESSAGE_LIMIT) -> str:
        """A server's message for an error: redacted, one line, at most ``limit`` characters; an HTML
        page is named by its title."""
        text = self.text(text)
        if looks_like_html(text):
            title = TITLE.search(text)
            body = TAG.sub(" ", SCRIPT_OR_STYLE.sub(" ", text))
            text = f"an HTML page: {title[1]}" if title and title[1].strip() else f"an HTML page: {body}"
            text = html.unescape(text)
            text = self.text(text)  # entities may have hidden a secret
        line = " ".join(text.split())
        return line if len(line) <= limit else line[: limit - 3].rstrip() + "..."

    def value(self, value):
        """A JSON value from the server with every secret in its strings redacted (the key only:
        names and other fields are kept as they came, so a batch is still recognised)."""
        if isinstance(value, str):
            for secret in self._secrets:
                value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, list):
            return [self.value(item) for item in value]
        if isinstance(value, dict):
            return {self.value(key): self.value(item) for key, item in value.items()}
        return value

    def in_body(self, body: bytes) -> bool:
        """Whether a raw answer (its bytes, not decoded: decoding a large one twice costs) holds a secret."""
        return any(secret in body for secret in self._raw)


def looks_like_html(text: str) -> bool:
    start = text.lstrip()[:200].lower()
    return start.startswith(("<!doctype", "<html", "<head", "<body")) or "<html" in start
