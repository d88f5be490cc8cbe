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


def markdown_links(path):
    """Broken relative links of a Markdown file outside the book (their files only)."""
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text(encoding="utf-8")):
        parts = urlsplit(target)
        if parts.scheme or not parts.path:
            continue
        if not (path.parent / unquote(parts.path)).exists():
            broken.append(f"{path}: {target} (no such file)")
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
