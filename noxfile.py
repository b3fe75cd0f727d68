"""Sessions: `nox -s lint typecheck tests` is what CI runs; the others are opt-in suites."""

from __future__ import annotations

import glob
import os
import shutil

import nox
import nox.project

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

# The CPU build of torch that lies on this machine's disk; a plain "torch" may pull a CUDA build.
TORCH = "torch==2.13.0"
PURE_VERSIONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]


def _interpreter(version: str) -> str:
    """An interpreter for ``version``: pyenv's build when present (its shims only answer for the
    versions made global), else the version for nox to find on PATH."""
    builds = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}")))
    return builds[-1] if builds else version


PURE_PYTHONS = [_interpreter(v) for v in PURE_VERSIONS]


def _extra(name: str) -> list[str]:
    """The requirements of one of pyproject.toml's extras (one list of pins, kept there)."""
    return list(nox.project.load_toml("pyproject.toml")["project"]["optional-dependencies"][name])


def _install_project(session: nox.Session, extras: str = "test") -> None:
    session.install(TORCH)
    session.install("-e", f".[{extras}]")


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """The main suite: everything but the opt-in TensorFlow, Ray and CUDA suites."""
    _install_project(session)
    session.run("pytest", "-m", "not tensorflow and not ray and not cuda and not browser and not wheel", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff, then the architecture: import-linter's contracts in pyproject.toml (stages import
    downward only, no cycle between sibling packages) and no import cycle between any modules."""
    session.install("ruff", "import-linter")
    session.run("ruff", "check", "neuronperf", "tests", "benchmarks", "docs", "tools", "noxfile.py")
    # Both read the package from the checkout (the working directory), not an installed copy.
    session.run("lint-imports")
    session.run("python", "tools/import_cycles.py")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    session.install("mypy", "types-PyYAML", "types-psutil", "types-jsonschema")
    session.install("-e", ".")
    session.run("mypy")


@nox.session(python=PURE_PYTHONS)
def pure(session: nox.Session) -> None:
    """The pure-Python tests (spec, plan, model index, reports) on every interpreter present."""
    session.install("-e", ".", "pytest", "hypothesis")
    session.run("pytest", "-m", "pure", *session.posargs)


@nox.session(python="3.11")
def tensorflow(session: nox.Session) -> None:
    """The TensorFlow backend, with tensorflow-cpu."""
    _install_project(session, "test,tensorflow")
    session.run("pytest", "-m", "tensorflow", *session.posargs)


#: torch and torchvision built for each other, for the timm/torchvision sources. torchvision from
#: the package index does not import beside the CPU build of torch 2.13.0 that every other session
#: uses ("operator torchvision::nms does not exist"), so this session has its own venv with the
#: pair that lies on this machine's disk (a CUDA build on x86_64, run here on the CPU).
VISION_TORCH = ("torch==2.14.1", "torchvision==0.29.1")


@nox.session(python="3.11")
def vision(session: nox.Session) -> None:
    """timm and torchvision model sources (random weights: nothing is downloaded), and the
    configs that plan with them, in a venv of their own (see VISION_TORCH)."""
    session.install(*VISION_TORCH)
    session.install("-e", ".[test]", "timm")
    session.run("pytest", "tests/test_sources_vision.py", "tests/test_configs.py", *session.posargs)


@nox.session(python="3.11")
def cuda(session: nox.Session) -> None:
    """The CUDA tests (backends on a GPU, NVML telemetry); each skips itself without a GPU.
    Where nvidia-smi exists, torch is the index's default build (with CUDA); elsewhere the CPU
    build on this disk, so that the session runs, and skips, anywhere."""
    session.install("torch" if shutil.which("nvidia-smi") else TORCH)
    session.install("-e", ".[test,nvml]")
    session.run("pytest", "-m", "cuda", "-rs", *session.posargs)


@nox.session(python="3.11")
def ray(session: nox.Session) -> None:
    """The Ray executor on real Ray instances on this machine (one head, or two logical nodes)."""
    _install_project(session, "test,ray")
    # Without it, the first ray.init writes an auth token file into the home folder.
    session.env["RAY_AUTH_MODE"] = "disabled"
    session.run("pytest", "-m", "ray", *session.posargs)


@nox.session(python="3.11")
def browser(session: nox.Session) -> None:
    """report.html in headless chromium (Debian's package, installed when missing: CI runs as root)."""
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        session.run("apt-get", "update", external=True)
        session.run("apt-get", "install", "-y", "chromium", external=True)
    _install_project(session)
    session.run("pytest", "-m", "browser", *session.posargs)


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """The documentation site in strict mode: a warning (a broken link or anchor, a page missing
    from the nav, a stale spec reference) fails the build."""
    session.install(*_extra("docs"))
    session.run("mkdocs", "build", "--strict", "--clean", *session.posargs)


@nox.session(python="3.11")
def wheel(session: nox.Session) -> None:
    """Build the sdist and the wheel, twine-check them, install the wheel in a fresh venv (not
    editable) and run `neuronperf validate` and the quick start from it."""
    session.install("pytest", *_extra("release"))
    # Only this file: the other test modules import the package from the checkout.
    session.run("pytest", "tests/test_wheel.py", "-m", "wheel", *session.posargs)
