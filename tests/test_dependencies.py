"""One dependency list: environment.yml (conda) installs exactly pyproject.toml's runtime dependencies, with the
same pins, then the package itself from pip. No conda runs in CI, so this comparison is what keeps the conda
path in step with the pip path that `make test` exercises."""
from __future__ import annotations

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
# conda-forge's name where it differs from PyPI's.
CONDA_TO_PYPI = {"pytorch": "torch"}
NOT_PACKAGES = {"python", "pip"}
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(.*?)\s*(#.*)?$")


def split(requirement: str) -> tuple[str, str]:
    """("name", "specifier") of 'name>=1.0', names normalised as PyPI does (case, '_' and '.' as '-')."""
    name, specifier, _ = REQUIREMENT.match(requirement).groups()
    return re.sub(r"[-_.]+", "-", name).lower(), specifier.replace(" ", "")


def conda_dependencies(text: str) -> tuple[dict[str, str], list[str]]:
    """({PyPI name: specifier} of the conda packages, [pip lines]) from environment.yml's dependencies list."""
    conda, pip, section, in_pip = {}, [], None, False
    for line in text.splitlines():
        if re.match(r"^[A-Za-z_]+:", line):
            section, in_pip = line.split(":")[0], False
            continue
        item = re.match(r"^(\s*)- (.+)$", line)
        if section != "dependencies" or not item:
            continue
        indent, value = len(item.group(1)), item.group(2).strip()
        if value == "pip:":
            in_pip = True
        elif in_pip and indent > 2:
            pip.append(value)
        else:
            in_pip = False
            name, specifier = split(value.replace("=", "==", 1) if re.match(r"^[\w.-]+=[^=]", value) else value)
            if name not in NOT_PACKAGES:
                conda[CONDA_TO_PYPI.get(name, name)] = specifier
    return conda, pip


def pyproject_dependencies() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return dict(split(requirement) for requirement in project["dependencies"])


def test_conda_installs_the_same_packages_with_the_same_pins():
    conda, _ = conda_dependencies((ROOT / "environment.yml").read_text())
    pip = pyproject_dependencies()
    assert sorted(conda) == sorted(pip), (
        f"environment.yml and pyproject.toml list different packages: only in environment.yml "
        f"{sorted(set(conda) - set(pip))}, only in pyproject.toml {sorted(set(pip) - set(conda))}")
    differ = {name: (conda[name], pip[name]) for name in pip if conda[name] != pip[name]}
    assert not differ, f"pins differ (environment.yml, pyproject.toml): {differ}"


def test_conda_then_installs_this_package_with_its_test_extras():
    _, pip = conda_dependencies((ROOT / "environment.yml").read_text())
    assert pip == ['-e ".[dev]"'], f"environment.yml's pip section should install only -e \".[dev]\", not {pip}"


def test_the_parser_reads_what_conda_reads():
    text = "name: x\ndependencies:\n  - python=3.11\n  - pytorch>=2.5\n  - Foo_Bar>=1 # note\n  - pip\n" \
           "  - pip:\n      - -e \".[dev]\"\nvariables:\n  - ignored\n"
    assert conda_dependencies(text) == ({"torch": ">=2.5", "foo-bar": ">=1"}, ['-e ".[dev]"'])
