"""Build a service's image contents without a container engine, by following the build stage of
services/Dockerfile: its COPY instructions (only what they name is copied) and its RUN command
(uv sync), then check the result as the image would run it: the entry point answers, and the
service migrates a new SQLite database from the installed (non-editable) packages alone.

    python scripts/image_check.py SERVICE [SERVICE ...]      (make image-check)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "services" / "Dockerfile"


def stages() -> tuple[list[str], list[str]]:
    """The instructions of the build stage and of the final stage, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    starts = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    return lines[starts[0] + 1 : starts[1]], lines[starts[1] + 1 :]


def build(service: str, into: Path, uv: str) -> Path:
    """The final image's entry point, under ``into`` (the image's root)."""
    env: dict[str, str] = {}
    workdir = into / "src"
    app = into / "app"
    build_stage, final_stage = stages()
    for line in build_stage:
        instruction, _, rest = line.partition(" ")
        rest = rest.replace("${SERVICE}", service)
        if instruction == "ENV":
            env |= dict(pair.split("=", 1) for pair in rest.split())
        elif instruction == "WORKDIR":
            workdir = into / rest.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif instruction == "COPY" and not rest.startswith("--from"):
            *sources, target = rest.split()
            for source in sources:
                origin = ROOT / source
                destination = workdir / target if not target.endswith("/") else workdir / target / origin.name
                if target in ("./", "."):
                    destination = workdir / origin.name
                if origin.is_dir():
                    shutil.copytree(
                        origin, destination, ignore=shutil.ignore_patterns("__pycache__", "tests")
                    )
                else:
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, destination)
        elif instruction == "RUN":
            # The image's paths live under ``into`` here: /app becomes into/app.
            command = rest.replace("/app", str(app)).replace("uv sync", f"{uv} sync --python 3.11", 1)
            run_env = {**os.environ, **{k: v.replace("/app", str(app)) for k, v in env.items()}}
            run_env.pop("VIRTUAL_ENV", None)
            subprocess.run(command, shell=True, cwd=workdir, env=run_env, check=True, capture_output=True)
        elif instruction in ("COPY", "ARG"):
            continue  # the uv binary from its image (ours is the same version); the build argument
        else:
            raise SystemExit(f"image-check: {DOCKERFILE}: no emulation for {instruction}")
    copied = sorted(p.name for p in (workdir / "services").iterdir())
    if copied != [service]:
        raise SystemExit(f"image-check: {service}'s image copies other services too: {copied}")
    # The final stage has only what it copies from the build stage, at the paths it names.
    entry = ""
    for line in final_stage:
        if line.startswith("COPY --from=build "):
            source, target = line.split()[2:4]
            if source != target:
                (into / target.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
                shutil.move(into / source.lstrip("/"), into / target.lstrip("/"))
        elif line.startswith("ENTRYPOINT "):
            entry = json.loads(line.removeprefix("ENTRYPOINT "))[0]
    shutil.rmtree(workdir)
    return into / entry.lstrip("/")


def check(service: str, entry: Path) -> None:
    try:
        answer = subprocess.run([str(entry), "--help"], capture_output=True, text=True, check=False)
    except OSError as exc:  # e.g. a script whose interpreter path is not in the final image
        raise SystemExit(f"image-check: {service}: the entry point does not start: {exc}") from None
    if answer.returncode != 0 or f"ach-{service}" not in answer.stdout:
        raise SystemExit(f"image-check: {entry} --help failed: {answer.stderr[-500:]}")
    with tempfile.TemporaryDirectory() as data:
        # Outside the workspace: only the image's packages can be imported.
        env = {"PATH": "/usr/bin:/bin", "ACH_DATA_DIR": data, "HOME": data}
        migrated = subprocess.run([str(entry), "migrate"], capture_output=True, text=True, env=env, cwd=data)
        if migrated.returncode != 0 or not (Path(data) / f"{service}.db").exists():
            raise SystemExit(f"image-check: {service} migrate failed: {migrated.stderr[-800:]}")


def main() -> None:
    services = sys.argv[1:] or sorted(
        p.name for p in (ROOT / "services").iterdir() if (p / "pyproject.toml").exists()
    )
    uv = os.environ.get("UV", str(ROOT / ".cache" / "uv-0.13.9" / "bin" / "uv"))
    for service in services:
        with tempfile.TemporaryDirectory() as scratch:
            entry = build(service, Path(scratch), uv)
            check(service, entry)
            site = Path(scratch) / "app" / ".venv" / "lib" / "python3.11" / "site-packages"
            packages = sorted(p.name for p in site.glob("ach*") if p.suffix != ".dist-info")
            print(
                f"image-check: {service}: copies only its own service; entry point and migrate work"
                f" (packages: {', '.join(packages)})"
            )


if __name__ == "__main__":
    main()
