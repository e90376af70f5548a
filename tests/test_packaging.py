"""The wheel holds what production needs: built, installed into a fresh environment
and run from there, it migrates, loads the sample data, speaks and passes `check`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEVELOPMENT_FILES = {"bot/fonts/README.md", "storage/migrations/script.py.mako"}


def test_the_wheel_runs_on_its_own(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a clean copy: no stale build/ from an earlier build
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "*.egg-info", "__pycache__", "*.db", "*.db-*", "tests",
        "bench", ".pytest_cache", ".ruff_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, timeout=120)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = {n for n in zipfile.ZipFile(wheel).namelist() if ".dist-info/" not in n}
    assert {f"i18n/locales/{lang}/core.yaml" for lang in ("zh-Hans", "zh-Hant", "en")} <= names
    assert {"bot/sample.yaml", "bot/emulator/api.json", "bot/fonts/LiaisonDeskCJK-Regular.otf",
            "bot/fonts/OFL.txt", "storage/migrations/env.py"} <= names
    assert not names & DEVELOPMENT_FILES
    assert not any(n.startswith(("tests/", "bench/", "tools/", "data/")) for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                    "--no-deps", "-q", str(wheel)], check=True, timeout=120)
    fresh = Path(subprocess.run([str(python), "-c", "import sysconfig; print("
                                 "sysconfig.get_paths()['purelib'])"], capture_output=True,
                                text=True, check=True).stdout.strip())
    # The dependencies from this environment, as a plain path: its .pth files (the
    # editable install of the project) are not read, so `bot` comes from the wheel.
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (fresh / "dependencies.pth").write_text("\n".join(sorted(deps)) + "\n")
    work = tmp_path / "work"
    work.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(work), "LANG": "C.UTF-8"}

    def bot(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run([str(python), "-I", "-m", "bot", *args], input=stdin,
                              capture_output=True, text=True, env=env, cwd=work, timeout=120)

    where = subprocess.run([str(python), "-I", "-c", "import bot; print(bot.__file__)"],
                           capture_output=True, text=True, env=env, cwd=work, check=True)
    assert where.stdout.startswith(str(fresh)), where.stdout
    console = bot("run", stdin="/start\n:quit\n")
    assert console.returncode == 0, console.stdout + console.stderr
    assert "您好！您是" in console.stdout, console.stdout  # zh-Hans, from the wheel's locales
    assert (work / "data" / "liaison_desk.db").exists()  # under the working directory
    check = bot("check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "up to date" in check.stdout


def test_compose_passes_only_variables_of_env_example() -> None:
    import yaml

    documented = {line.split("=", 1)[0] for line in
                  (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
                  if line and not line.startswith("#") and "=" in line}
    bot = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))["services"]["bot"]
    assert bot["env_file"] == ".env"
    assert set(bot["environment"]) <= documented, set(bot["environment"]) - documented
    assert {"DATABASE_URL", "BOT_MODE", "WEBHOOK_PORT"} <= set(bot["environment"])
    assert bot["healthcheck"]["test"] == ["CMD", "python", "-m", "bot", "check"]
