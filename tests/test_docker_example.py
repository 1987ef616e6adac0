"""The docker work-pool example (deployments/docker/) holds together without a Docker daemon: the image copies
every file its COPY names and everything the flows import; the deployments are prefect.yaml's, on the docker
pool; their job variables fit prefect-docker's own job template; and the pool's template hands each container
its secrets from Prefect Secret blocks, resolved by Prefect as a worker would."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prefect._internal.schemas.validators import validate_values_conform_to_schema
from prefect_docker.worker import DockerWorker

from carepath.settings import Settings
from carepath.sources import load_flow

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "deployments" / "docker"
MAIN = {d["name"]: d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}
CONFIG = yaml.safe_load((EXAMPLE / "prefect.yaml").read_text())
DOCKER = CONFIG["deployments"]
TEMPLATE = json.loads((EXAMPLE / "base-job-template.json").read_text())
SECRETS = {
    f"CAREPATH_{name.upper()}"
    for name, field in Settings.model_fields.items()
    if "SecretStr" in str(field.annotation)
}
# What `prefect deploy` would take from its environment for `{{ $NAME }}`.
DEPLOY_ENV = {
    "CAREPATH_IMAGE": "registry.example/carepath:abc1234",
    "CAREPATH_DASK_ADDRESS": "tcp://dask:8786",
}


# Loads each entrypoint and prints the checkout's top-level folders the process imported from.
CLOSURE = """
import json, sys
from pathlib import Path
from carepath.sources import load_flow
root = Path.cwd().resolve()
for entrypoint in sys.argv[1:]:
    load_flow(entrypoint)
files = [Path(m.__file__).resolve() for m in list(sys.modules.values()) if getattr(m, "__file__", None)]
print(json.dumps(sorted({f.relative_to(root).parts[0] for f in files if f.is_relative_to(root) and ".venv" not in f.parts})))
"""


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (keyword, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def env_placeholders(value: str) -> str:
    """`{{ $NAME }}` filled in as `prefect deploy` does from its environment."""
    return re.sub(r"\{\{\s*\$(\w+)\s*\}\}", lambda m: DEPLOY_ENV[m.group(1)], value)


def job_variables(deployment: dict) -> dict:
    """A deployment's job variables, with the deploying shell's `{{ $NAME }}` filled in."""
    return json.loads(env_placeholders(json.dumps(deployment["work_pool"]["job_variables"])))


def test_the_image_copies_files_that_exist_and_everything_the_flows_import() -> None:
    steps = instructions(EXAMPLE / "Dockerfile")
    assert steps[0] == ("FROM", "python:3.11-slim")
    copied: list[str] = []
    for keyword, args in steps:
        if keyword == "COPY":
            *sources, _target = args.split()
            copied += [s.rstrip("/") for s in sources]
    missing = [s for s in copied if not (ROOT / s).exists()]
    assert missing == []
    [workdir] = [args for keyword, args in steps if keyword == "WORKDIR"]
    assert CONFIG["pull"] == [{"prefect.deployments.steps.set_working_directory": {"directory": workdir}}]
    assert (
        "CAREPATH_HOME=/opt/carepath" in " ".join(a for k, a in steps if k == "ENV")
        and workdir == "/opt/carepath"
    )
    # The pinned install, editable as `make install` (flows, tasks and models are found beside `carepath`),
    # after the files it reads are in.
    install = next(i for i, (k, a) in enumerate(steps) if k == "RUN" and "pip install" in a)
    assert steps[install][1] == "pip install -c constraints.txt -e ."
    before = {s for k, a in steps[:install] if k == "COPY" for s in a.split()[:-1]}
    assert {"pyproject.toml", "constraints.txt", "README.md", "carepath/"} <= before
    # Every top-level folder of the checkout that the deployed flows import (in a fresh process: this one has
    # imported the tests' own helpers), and what the settings read from it.
    imported = set(
        json.loads(
            subprocess.run(
                [sys.executable, "-c", CLOSURE, *(d["entrypoint"] for d in DOCKER)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
                timeout=300,
            ).stdout
        )
    )
    assert {"carepath", "flows", "tasks", "models"} <= imported
    assert imported <= set(copied)
    assert {"data", "alembic.ini"} <= set(copied)  # the quality suites; the migrations' configuration
    ignored = (EXAMPLE / "Dockerfile.dockerignore").read_text().split()
    assert {".venv", ".git", ".env"} <= set(ignored)


@pytest.mark.parametrize("deployment", DOCKER, ids=[d["name"] for d in DOCKER])
def test_each_docker_deployment_is_the_main_one_on_the_docker_pool(deployment: dict) -> None:
    main = MAIN[deployment["name"]]
    for key in ("entrypoint", "parameters", "triggers", "schedules", "concurrency_limit"):
        assert deployment.get(key) == main.get(key), key
    assert load_flow(deployment["entrypoint"]).name == deployment["name"]
    pool = deployment["work_pool"]
    assert pool["name"] == "carepath-docker"
    variables = job_variables(deployment)
    validate_values_conform_to_schema(variables, TEMPLATE["variables"], ignore_required=True)
    assert variables["image"] == DEPLOY_ENV["CAREPATH_IMAGE"]
    env = variables.get("env", {})
    settings = {f"CAREPATH_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= settings  # each a real setting …
    assert not set(env) & SECRETS  # … and no secret in a deployment


def test_the_pool_template_is_prefect_dockers_with_the_secrets_from_blocks() -> None:
    default = DockerWorker.get_default_base_job_template()
    assert TEMPLATE["variables"] == default["variables"]
    assert {k: v for k, v in TEMPLATE["job_configuration"].items() if k != "env"} == {
        k: v for k, v in default["job_configuration"].items() if k != "env"
    }
    env = TEMPLATE["job_configuration"]["env"]
    assert set(env) <= SECRETS | {"CAREPATH_DATABASE_URL"}
    assert all(re.fullmatch(r"\{\{ prefect\.blocks\.secret\.[a-z0-9-]+ \}\}", v) for v in env.values())


@pytest.mark.usefixtures("prefect_server")
def test_a_worker_would_start_the_container_with_the_image_the_settings_and_the_secrets() -> None:
    """Prefect builds the job configuration a docker worker would start, from the pool's template and a
    deployment's variables: the image, the deployment's settings, and the secrets read from their blocks."""
    from prefect.blocks.system import Secret
    from prefect_docker.worker import DockerWorkerJobConfiguration

    secrets = {
        "carepath-database-url": "postgresql+psycopg2://carepath@db.internal:5432/carepath",
        "carepath-twilio-auth-token": "twilio-token-from-a-block",
        "carepath-sendgrid-api-key": "SG.key-from-a-block",
    }
    for name, value in secrets.items():
        Secret(value=value).save(name, overwrite=True)
    try:
        from prefect.client.orchestration import get_client

        async def build(variables: dict) -> DockerWorkerJobConfiguration:
            async with get_client() as client:
                return await DockerWorkerJobConfiguration.from_template_and_values(
                    base_job_template=TEMPLATE, values=variables, client=client
                )

        kpi = next(d for d in DOCKER if d["name"] == "kpi-report")
        job = asyncio.run(build(job_variables(kpi)))
    finally:
        for name in secrets:
            Secret.delete(name)
    assert job.image == DEPLOY_ENV["CAREPATH_IMAGE"] and job.auto_remove is True
    assert job.env == {
        "CAREPATH_DATABASE_URL": secrets["carepath-database-url"],
        "CAREPATH_TWILIO_AUTH_TOKEN": secrets["carepath-twilio-auth-token"],
        "CAREPATH_SENDGRID_API_KEY": secrets["carepath-sendgrid-api-key"],
        "CAREPATH_BATCH_TASK_RUNNER": "dask",
        "CAREPATH_DASK_ADDRESS": DEPLOY_ENV["CAREPATH_DASK_ADDRESS"],
        "CAREPATH_BATCH_WORKERS": "4",
    }
