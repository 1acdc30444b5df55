"""Generate the student lab (``lab/``) from the reference solutions.

    python -m solutions.generate              # rewrite lab/ from solutions/
    python -m solutions.generate --check      # exit 1 if lab/ differs (drift)
    python -m solutions.generate --out DIR --keep ex1,ex2   # a lab with ex1-2 done

The solution code is marked as nbgrader marks it, extended with the
exercise id and a hint::

        ### BEGIN SOLUTION ex3: recv_into the buffer until it returns 0
        ...the reference code...
        ### END SOLUTION

In the lab each region becomes one line at the indentation of its marker::

        raise NotImplementedError("ex3: recv_into the buffer until it returns 0")

so the starter imports and runs, and whatever reaches a stub says which
exercise to do. A server command that hits a stub answers ``502`` and the
server keeps serving (``Session.dispatch`` catches NotImplementedError).

Two small tables below adjust that rule where a raising stub would stop the
starter from running at all (see their comments). A STARTER entry that
matches no region is an error, so that table cannot silently drift from the
solutions.

``lab/README.md`` is the handout, written by hand, except for the blocks
between ``<!-- BEGIN GENERATED exN -->`` and ``<!-- END GENERATED -->``,
which list the functions each exercise asks for and are rewritten here.

``lab/`` is never edited by hand: the kit's tests fail when it differs from
what this module makes.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

SOLUTIONS = Path(__file__).resolve().parent
REPO_ROOT = SOLUTIONS.parent
LAB = REPO_ROOT / "lab"

# Modules of solutions/ that are tools for the kit, not part of the lab.
TOOLS = {"generate.py", "release.py", "gradescope.py", "kitfiles.py"}

BEGIN = re.compile(r"^(?P<indent>[ \t]*)### BEGIN SOLUTION(?:[ \t]+(?P<exercise>ex\d+)(?::[ \t]*(?P<hint>.*?))?)?[ \t]*$")
END = re.compile(r"^[ \t]*### END SOLUTION[ \t]*$")

HEADER = ("# ftpkit lab: starter code generated from the reference solution by\n"
          "# `python -m solutions.generate`. Replace each `raise NotImplementedError(...)`\n"
          "# with your code; lab/README.md says what each exercise asks for.\n")

# Regions whose starter is a simpler working version instead of a raising
# stub, because the rest of the program runs through them: without a loop
# that serves clients, and counters that count, no earlier exercise could be
# tried or tested. Exercise 5 replaces them with the concurrent versions.
STARTER = {
    ("server.py", "ex5", "serve_forever"): '''\
# ex5: {hint}.
# Until then the starter serves one client at a time, in this thread, and
# a session that fails does not take the server down.
try:
    Session(control, self.config, self.stats).run()
except Exception:
    import traceback
    traceback.print_exc()
''',
    ("session.py", "ex5", "add"): '''\
# ex5: {hint}.
# This starter version is fine for one client at a time; with a thread per
# client, two sessions can interleave here and an update is lost.
for name, amount in amounts.items():
    setattr(self, name, getattr(self, name) + amount)
''',
}


class MarkerError(Exception):
    pass


@dataclass
class Region:
    module: str          # file name in solutions/, e.g. "helper.py"
    exercise: str        # "ex3"
    hint: str
    function: str        # the innermost enclosing def, e.g. "FtpClient.transfer"
    begin: int           # 1-based line numbers of the markers
    end: int
    indent: str


def find_regions(module: str, text: str) -> list[Region]:
    """The solution regions of one module, checked for balance."""
    regions = []
    lines = text.splitlines()
    open_at = None
    for number, line in enumerate(lines, 1):
        begin, end = BEGIN.match(line), END.match(line)
        if "### BEGIN SOLUTION" in line and not begin:
            raise MarkerError(f"{module}:{number}: malformed marker: {line.strip()!r}")
        if begin:
            if open_at is not None:
                raise MarkerError(f"{module}:{number}: BEGIN SOLUTION inside the region opened at line {open_at[0]}")
            if not begin.group("exercise") or not begin.group("hint"):
                raise MarkerError(f"{module}:{number}: a marker needs an exercise and a hint: "
                                  "### BEGIN SOLUTION exN: what to do")
            open_at = (number, begin)
        elif end:
            if open_at is None:
                raise MarkerError(f"{module}:{number}: END SOLUTION without BEGIN")
            start, match = open_at
            regions.append(Region(module, match.group("exercise"), match.group("hint").strip(),
                                  "", start, number, match.group("indent")))
            open_at = None
    if open_at is not None:
        raise MarkerError(f"{module}:{open_at[0]}: BEGIN SOLUTION never ended")
    _name_functions(module, text, regions)
    return regions


def _name_functions(module: str, text: str, regions: list[Region]) -> None:
    tree = ast.parse(text, filename=module)
    scopes: list[tuple[int, int, str]] = []

    def visit(node, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    scopes.append((child.lineno, child.end_lineno, name))
                visit(child, name + ".")
    visit(tree, "")
    for region in regions:
        enclosing = [s for s in scopes if s[0] < region.begin <= s[1]]
        if not enclosing:
            raise MarkerError(f"{module}:{region.begin}: a solution region must be inside a function")
        region.function = max(enclosing, key=lambda s: s[0])[2]


def _key(region: Region) -> tuple[str, str, str]:
    return region.module, region.exercise, region.function.rsplit(".", 1)[-1]


def starter_module(module: str, text: str, package: str, keep: frozenset[str] = frozenset(),
                   used: set | None = None) -> str:
    """One module of the lab: regions replaced by stubs, the package renamed."""
    regions = find_regions(module, text)
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    position = 0
    for region in regions:
        out.extend(lines[position:region.begin - 1])
        key = _key(region)
        if region.exercise in keep:
            out.extend(lines[region.begin:region.end - 1])
        elif key in STARTER:
            body = STARTER[key].format(hint=region.hint)
            out.extend(region.indent + line if line.strip() else line
                       for line in body.splitlines(keepends=True))
        else:
            message = f"{region.exercise}: {region.hint}"
            out.append(f"{region.indent}raise NotImplementedError({message!r})\n")
        if used is not None:
            used.add(key)
        position = region.end
    out.extend(lines[position:])
    body = "".join(out)
    # The package names itself in a few places (python -m solutions.server,
    # and __package__ when run as a script): those must name the lab.
    body = re.sub(r"\bsolutions\b", package, body)
    result = HEADER + body
    compile(result, f"{package}/{module}", "exec")
    return result


def solution_modules(solutions: Path = SOLUTIONS) -> list[Path]:
    return sorted(p for p in solutions.glob("*.py") if p.name not in TOOLS)


def generate(solutions: Path = SOLUTIONS, package: str = "lab",
             keep: frozenset[str] = frozenset()) -> dict[str, str]:
    """File name -> text of every generated file of the lab (README blocks aside)."""
    files = {}
    used: set = set()
    for path in solution_modules(solutions):
        files[path.name] = starter_module(path.name, path.read_text(encoding="utf-8"), package, keep, used)
    # Every STARTER entry must still match a region of the solutions.
    unmatched = set(STARTER) - used
    if unmatched and solutions == SOLUTIONS:
        raise MarkerError("generate.py names regions that the solutions no longer have: "
                          + ", ".join("/".join(k) for k in sorted(unmatched))
                          + " (update STARTER in solutions/generate.py)")
    return files


def exercises(solutions: Path = SOLUTIONS) -> dict[str, list[Region]]:
    """Exercise id -> its regions (for the handout), in module order."""
    table: dict[str, list[Region]] = {}
    for path in solution_modules(solutions):
        for region in find_regions(path.name, path.read_text(encoding="utf-8")):
            table.setdefault(region.exercise, []).append(region)
    return dict(sorted(table.items(), key=lambda item: int(item[0][2:])))


# --- the handout's generated blocks ------------------------------------------

BLOCK = re.compile(r"(<!-- BEGIN GENERATED (ex\d+) -->\n).*?(<!-- END GENERATED -->)", re.DOTALL)


def handout_block(regions: list[Region]) -> str:
    lines = []
    for region in regions:
        given = " (the starter has a simple version to replace)" if _key(region) in STARTER else ""
        lines.append(f"- `lab/{region.module}` `{region.function}`: {region.hint}{given}\n")
    return "".join(lines)


def render_handout(text: str, solutions: Path = SOLUTIONS) -> str:
    table = exercises(solutions)
    return BLOCK.sub(lambda m: m.group(1) + handout_block(table.get(m.group(2), [])) + m.group(3), text)


# --- writing and checking ----------------------------------------------------

def expected_lab(solutions: Path = SOLUTIONS, lab: Path = LAB) -> dict[str, str]:
    """Everything the generator owns in ``lab``: file name -> text."""
    files = generate(solutions)
    readme = lab / "README.md"
    if readme.exists():
        files["README.md"] = render_handout(readme.read_text(encoding="utf-8"), solutions)
    return files


def drift(solutions: Path = SOLUTIONS, lab: Path = LAB) -> list[str]:
    """How ``lab`` differs from what the generator makes (empty: no drift)."""
    problems = []
    expected = expected_lab(solutions, lab)
    for name, text in expected.items():
        path = lab / name
        if not path.exists():
            problems.append(f"lab/{name} is missing")
            continue
        actual = path.read_text(encoding="utf-8")
        if actual != text:
            diff = difflib.unified_diff(actual.splitlines(keepends=True), text.splitlines(keepends=True),
                                        f"lab/{name}", f"lab/{name} (generated)", n=1)
            problems.append("".join(list(diff)[:40]).rstrip())
    for path in sorted(lab.glob("*.py")):
        if path.name not in expected:
            problems.append(f"lab/{path.name} is not generated from solutions/ (remove it)")
    return problems


def write(solutions: Path = SOLUTIONS, lab: Path = LAB, package: str = "lab",
          keep: frozenset[str] = frozenset()) -> list[str]:
    lab.mkdir(parents=True, exist_ok=True)
    files = generate(solutions, package, keep)
    readme = lab / "README.md"
    if readme.exists() and package == "lab" and lab == LAB:
        files["README.md"] = render_handout(readme.read_text(encoding="utf-8"), solutions)
    written = []
    for name, text in files.items():
        path = lab / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(name)
    for path in lab.glob("*.py"):
        if path.name not in files:
            path.unlink()
            written.append(f"{path.name} (removed)")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m solutions.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report drift; exit 1 if lab/ is out of date")
    parser.add_argument("--out", type=Path, help="write the lab here instead of lab/ (package named after the folder)")
    parser.add_argument("--keep", default="", help="exercises to leave solved, e.g. ex1,ex2")
    args = parser.parse_args(argv)
    keep = frozenset(e.strip() for e in args.keep.split(",") if e.strip())
    try:
        if args.check:
            problems = drift()
            for problem in problems:
                print(problem)
            if problems:
                print("lab/ is out of date: run `python -m solutions.generate`", file=sys.stderr)
                return 1
            print("lab/ matches solutions/")
            return 0
        out = args.out or LAB
        written = write(SOLUTIONS, out, out.resolve().name, keep)
    except MarkerError as err:
        print(f"generate: {err}", file=sys.stderr)
        return 2
    print(f"{out}: " + (", ".join(written) if written else "up to date"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
