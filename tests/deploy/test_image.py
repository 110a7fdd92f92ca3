"""deploy/Dockerfile builds one small, unprivileged image for every service, and the build context leaks nothing.

No Docker engine builds it here; these read the Dockerfile's instructions stage by stage.
"""

from __future__ import annotations

import json
import re
import shlex

from tests.deploy.manifests import DEPLOY, REPO


def stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    result: list[list[tuple[str, str]]] = [[]]
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        if instruction.upper() == "FROM":
            result.append([])
        result[-1].append((instruction.upper(), arguments.strip()))
    return result


def instructions(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [arguments for instruction, arguments in stage if instruction == name]


def test_it_is_a_multi_stage_build_on_python_3_11_slim() -> None:
    preamble, *built = stages()
    assert len(built) == 2
    assert [instructions(stage, "FROM")[0].split()[-1] for stage in built] == ["builder", "runtime"]
    base = dict(arg.split("=", 1) for arg in instructions(preamble, "ARG"))["PYTHON_IMAGE"]
    assert base.startswith("python:3.11-slim")


def test_the_builder_makes_wheels_pinned_by_the_constraints_file() -> None:
    builder = stages()[1]
    runs = " ".join(instructions(builder, "RUN"))
    assert "pip wheel" in runs and "-c constraints.txt" in runs
    assert any("constraints.txt" in copy for copy in instructions(builder, "COPY"))


def test_the_runtime_installs_only_those_wheels() -> None:
    runtime = stages()[2]
    (install,) = [run for run in instructions(runtime, "RUN") if "pip install" in run]
    assert "--no-index" in install and "from=builder" in install
    assert instructions(runtime, "COPY") == []  # no source tree, no build files in the final image


def test_the_runtime_runs_as_uid_10001() -> None:
    runtime = stages()[2]
    assert instructions(runtime, "USER") == ["10001:10001"]
    assert any("--uid 10001" in run for run in instructions(runtime, "RUN"))


def test_the_entrypoint_runs_a_module_and_defaults_to_the_gateway() -> None:
    runtime = stages()[2]
    assert json.loads(instructions(runtime, "ENTRYPOINT")[0]) == ["python", "-m"]
    assert json.loads(instructions(runtime, "CMD")[0]) == ["services.gateway", "serve"]


def test_the_runtime_writes_no_bytecode_and_listens_beyond_loopback() -> None:
    environment = " ".join(instructions(stages()[2], "ENV"))
    settings = dict(pair.split("=", 1) for pair in shlex.split(environment))
    assert settings["PYTHONDONTWRITEBYTECODE"] == "1"
    assert settings["LEARN_HOST"] == "0.0.0.0"
    assert settings["LEARN_DATA_DIR"].startswith("/tmp/")


def test_no_secret_is_baked_into_the_image() -> None:
    for stage in stages():
        for instruction in ("ENV", "ARG", "LABEL"):
            for arguments in instructions(stage, instruction):
                assert not re.search(r"TOKEN|SECRET|PASSWORD|PEPPER|AMQP_URL|POSTGRES_URL", arguments), arguments


def test_the_build_context_admits_only_the_sources_the_image_is_built_from() -> None:
    rules = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert allowed == {"pyproject.toml", "constraints.txt", "shared", "services"}
    sources = set()
    for copy in instructions(stages()[1], "COPY"):
        *from_context, _destination = [token for token in shlex.split(copy) if not token.startswith("--")]
        sources |= {source.rstrip("/") for source in from_context}
    assert sources == allowed
