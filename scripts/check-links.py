#!/usr/bin/env python3
"""Checks every relative link and #anchor in a built HTML book.

Usage: check-links.py BOOK_DIR [MARKDOWN_FILE...]. Links to other sites (http:, https:,
mailto:) are not followed; every other href and src must name a file in the book, and a
#fragment must name an id in that file. Each MARKDOWN_FILE given (the README) has its
relative links checked to name files of the repository. Prints each broken link with the
page it is on; exits 1 if any.
"""

import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids = set()
        self.links = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key):
                self.ids.add(attrs[key])
        for key in ("href", "src"):
            if attrs.get(key) is not None:
                self.links.append(attrs[key])


def parse(path, cache):
    if path not in cache:
        page = Page()
        page.feed(path.read_text(encoding="utf-8", errors="replace"))
        cache[path] = page
    return cache[path]


FENCE_RE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INLINE_CODE_RE = re.compile(r"`[^`\n]*`")
LINK_RE = re.compile(r"\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
REF_DEF_RE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.M)
HREF_RE = re.compile(r"<a\s[^>]*href=\"([^\"]+)\"", re.I)
HEADING_RE = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def slug(heading):
    """A heading's anchor as GitHub and mdBook make it."""
    text = re.sub(r"<[^>]+>|[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path):
    text = FENCE_RE.sub("", path.read_text(encoding="utf-8"))
    ids = set(re.findall(r"<a\s[^>]*(?:id|name)=\"([^\"]+)\"", text))
    return ids | {slug(h) for h in HEADING_RE.findall(text)}


def markdown_links(path):
    """Broken relative links of a Markdown file outside the book: each must name a file
    of the repository, and a #fragment a heading (or anchor) of that file. Code is not
    read for links."""
    text = INLINE_CODE_RE.sub("", FENCE_RE.sub("", path.read_text(encoding="utf-8")))
    targets = LINK_RE.findall(text) + REF_DEF_RE.findall(text) + HREF_RE.findall(text)
    broken = []
    for target in targets:
        target = target.strip("<>")
        parts = urlsplit(target)
        if parts.scheme or target.startswith("//"):
            continue
        file = path if not parts.path else path.parent / unquote(parts.path)
        if not file.exists():
            broken.append(f"{path}: {target} (no such file)")
        elif parts.fragment and file.suffix == ".md" and unquote(parts.fragment) not in anchors(file):
            broken.append(f"{path}: {target} (no #{parts.fragment} there)")
    return broken


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    root = Path(sys.argv[1]).resolve()
    pages = sorted(root.rglob("*.html"))
    if not pages:
        sys.exit(f"check-links: no HTML pages under {root}: build the book first")
    cache, broken, checked = {}, [], 0
    for path in pages:
        if path.name in ("print.html", "404.html", "toc.html"):
            continue  # the print page repeats every page; 404 and toc use absolute roots
        for link in parse(path, cache).links:
            parts = urlsplit(link)
            if parts.scheme or link.startswith("//") or link.startswith("javascript:"):
                continue
            checked += 1
            target = path if not parts.path else (path.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file() or root not in target.parents and target != root:
                broken.append(f"{path.relative_to(root)}: {link} (no such file)")
                continue
            fragment = unquote(parts.fragment)
            if fragment and target.suffix == ".html" and fragment not in parse(target, cache).ids:
                broken.append(f"{path.relative_to(root)}: {link} (no #{fragment} there)")
    for markdown in sys.argv[2:]:
        broken.extend(markdown_links(Path(markdown)))
    for line in broken:
        print(f"broken link: {line}")
    print(f"check-links: {checked} relative links in {len(pages)} pages, {len(broken)} broken")
    sys.exit(1 if broken else 0)


if __name__ == "__main__":
    main()
