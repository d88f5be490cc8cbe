#!/usr/bin/env python3
"""The house rules of host/src, checked in CI (`scripts/check-house.py`).

- no file over MAX_FILE_LINES lines;
- no function over MAX_FN_LINES lines (from its `fn` line to its closing brace);
- no import cycle between sibling modules: a reference from module a::x::... to
  a::y::... is an edge x -> y among a's children (references between a module and
  its own ancestors, such as a parent's re-exports, are not edges).

Exit status 1 lists every breach, with the file and line; `--report` prints the
largest files and functions even when all is well.
"""

import os
import re
import sys
from collections import defaultdict

MAX_FILE_LINES = 400
MAX_FN_LINES = 60
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "host", "src")

FN_RE = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?(extern\s+\"[^\"]*\"\s+)?fn\s+(\w+)")
PATH_RE = re.compile(r"\b(crate|super|self)((?:::\w+)+)")
USE_GROUP_RE = re.compile(r"\buse\s+(crate|super|self)((?:::\w+)*)::\{([^;]*)\};", re.S)


def strip(text):
    """Blanks out comments, strings and chars, keeping line breaks and braces aligned."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + len(hashes) + 2)
            end = n if end < 0 else end + 1 + len(hashes)
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(re.sub(r"[^\n]", " ", text[i:j + 1]))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x..'", text[i:i + 12]):
            m = re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x..'", text[i:i + 12])
            out.append(" " * len(m.group(0)))
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def module_of(path):
    rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return rel


def functions(lines):
    """Yields (name, first line, length) for every fn with a body."""
    for i, line in enumerate(lines):
        m = FN_RE.match(line)
        if not m:
            continue
        depth, started = 0, False
        for j in range(i, len(lines)):
            for ch in lines[j]:
                if ch == "{":
                    depth, started = depth + 1, True
                elif ch == "}":
                    depth -= 1
                elif ch == ";" and not started and depth == 0:
                    break
            else:
                if started and depth == 0:
                    yield m.group(7), i + 1, j - i + 1
                    break
                continue
            break


def references(module, code, submodules):
    """The module paths `module`'s code refers to, resolved to absolute paths."""
    found = []
    for m in USE_GROUP_RE.finditer(code):
        base = resolve(module, m.group(1), m.group(2))
        for item in re.split(r"[,{}\s]+", m.group(3)):
            if item and item not in ("self", "*"):
                found.append(base + item.split("::"))
        found.append(base)
    for m in PATH_RE.finditer(code):
        found.append(resolve(module, m.group(1), m.group(2)))
    return found


def resolve(module, head, tail):
    parts = [p for p in tail.split("::") if p]
    if head == "crate":
        base = []
    elif head == "self":
        base = list(module)
    else:
        base = list(module)
        while parts is not None and head == "super":
            base = base[:-1]
            if parts and parts[0] == "super":
                parts = parts[1:]
                continue
            break
    return base + parts


def cycles(edges):
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def main():
    report = "--report" in sys.argv
    files = []
    for dirpath, _, names in os.walk(ROOT):
        files += [os.path.join(dirpath, n) for n in names if n.endswith(".rs")]
    modules = {tuple(module_of(f)) for f in files}
    breaches, sizes, fns = [], [], []
    edges = defaultdict(set)
    for path in sorted(files):
        rel = os.path.relpath(path, os.path.join(ROOT, "..", ".."))
        text = open(path, encoding="utf-8").read()
        lines = text.split("\n")
        count = len(lines) - (1 if text.endswith("\n") else 0)
        sizes.append((count, rel))
        if count > MAX_FILE_LINES:
            breaches.append(f"{rel}: {count} lines (at most {MAX_FILE_LINES}): split it by what it owns")
        code = strip(text)
        for name, line, length in functions(code.split("\n")):
            fns.append((length, f"{rel}:{line} {name}"))
            if length > MAX_FN_LINES:
                breaches.append(f"{rel}:{line}: fn {name} is {length} lines (at most {MAX_FN_LINES})")
        module = module_of(path)
        for target in references(module, code, modules):
            # The longest known module that prefixes the reference.
            while target and tuple(target) not in modules:
                target = target[:-1]
            a, b = list(module), list(target)
            k = 0
            while k < min(len(a), len(b)) and a[k] == b[k]:
                k += 1
            if k == len(a) or k == len(b):
                continue  # one is the other's ancestor
            edges["::".join(a[:k + 1])].add("::".join(b[:k + 1]))
    for comp in cycles(edges):
        detail = "; ".join(f"{v} -> {w}" for v in comp for w in sorted(edges[v]) if w in comp)
        breaches.append(f"import cycle between {', '.join(comp)} ({detail})")
    if report:
        print("largest files:", *[f"  {n:4} {p}" for n, p in sorted(sizes, reverse=True)[:10]], sep="\n")
        print("longest functions:", *[f"  {n:4} {p}" for n, p in sorted(fns, reverse=True)[:15]], sep="\n")
    if breaches:
        print(f"check-house: {len(breaches)} breach(es) of the house rules (scripts/check-house.py):")
        print(*[f"  {b}" for b in breaches], sep="\n")
        return 1
    print(f"check-house: {len(files)} files in host/src, none over {MAX_FILE_LINES} lines, "
          f"no function over {MAX_FN_LINES}, no import cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
