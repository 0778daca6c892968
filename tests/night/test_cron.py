"""crontab.example, its wrapper (mail only on failure) and make install-cron."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLACEHOLDER = "/path/to/overnight"


def _block() -> dict[str, str]:
    """The overnight block of crontab.example: its variables and its one job line."""
    text = (REPO / "crontab.example").read_text()
    block = text[text.index("# >>> overnight"):text.index("# <<< overnight")]
    lines = [line for line in block.splitlines()[1:] if line and not line.startswith("#")]
    variables = dict(line.split("=", 1) for line in lines if re.match(r"^[A-Z]+=", line))
    (job,) = [line for line in lines if not re.match(r"^[A-Z]+=", line)]
    return {**variables, "job": job}


def _cron_command() -> str:
    """The job line's command, for this checkout, as cron would run it."""
    fields = _block()["job"].split(maxsplit=5)
    assert fields[:5] == ["30", "21", "*", "*", "*"]  # 21:30 every day
    assert "%" not in fields[5]  # cron would turn it into a newline
    return fields[5].replace(PLACEHOLDER, str(REPO))


def test_crontab_sets_shell_path_and_mail_and_runs_the_wrapper():
    block = _block()
    assert block["SHELL"] == "/bin/bash"
    assert set(block["PATH"].split(":")) >= {"/usr/bin", "/bin"}
    assert "@" in block["MAILTO"]
    assert _cron_command() == f"cd {REPO} && scripts/cron-night.sh"


def _fake_make(tmp_path: Path, night: str, ready: str = "") -> dict[str, str]:
    """An environment whose `make` is a script: the wrapper's side of the contract only.
    ``make ready`` runs ``ready``; ``make night-command`` prints a command that runs the
    shell code ``night`` (the night driver's stand-in)."""
    (tmp_path / "night.sh").write_text(night)
    fake = tmp_path / "bin" / "make"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text("#!/bin/bash\ncase \" $* \" in\n"
                    f"  *' ready '*) {ready or 'true'};;\n"
                    f"  *' night-command '*) echo \"bash '{tmp_path / 'night.sh'}' --x 'a b'\";;\n"
                    "esac\n")
    fake.chmod(0o755)
    return {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}",
            "RUNS": str(tmp_path / "runs")}


def _run_cron(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", _cron_command()], env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_a_good_night_is_silent_so_cron_sends_no_mail(tmp_path):
    env = _fake_make(tmp_path, 'echo "the whole chain ran with $2"\n')
    proc = _run_cron(env)

    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == ""
    log = (tmp_path / "runs" / "cron.log").read_text()
    assert "cron: the night driver" in log and "the whole chain ran with a b" in log
    assert "cron: exit code 0" in log


@pytest.mark.parametrize("code", [1, 2, 3, 75])
def test_a_failed_night_prints_its_own_code_and_log_tail(tmp_path, code):
    env = _fake_make(tmp_path, f'echo "stage train-hybrid failed"; exit {code}\n')
    proc = _run_cron(env)

    assert proc.returncode == code
    assert f"exit code {code}" in proc.stdout and "stage train-hybrid failed" in proc.stdout


def test_make_failing_before_the_night_starts_is_exit_3(tmp_path):
    proc = _run_cron(_fake_make(tmp_path, "echo never", 'echo "Makefile:1: *** bad" >&2; '
                                                        "exit 2"))
    assert proc.returncode == 3 and "Makefile:1: *** bad" in proc.stdout
    assert "never" not in (tmp_path / "runs" / "cron.log").read_text()


def test_a_second_start_exits_75_with_a_clear_message(tmp_path):
    """The real chain's lock: while a night holds it, cron's start does nothing."""
    stamp = tmp_path / "setup-done"
    stamp.touch()
    runs = tmp_path / "runs"
    runs.mkdir()
    env = {**os.environ, "RUNS": str(runs), "VENV": sys.prefix, "SETUP_STAMP": str(stamp),
           "DATE": "2026-01-02", "REPORTS": str(tmp_path / "reports"),
           "SUBMISSION": str(tmp_path / "submission")}
    with open(runs / ".lock", "w") as held:
        held.write("pid 4242, night 2026-01-02 in runs/2026-01-02, started 21:30\n")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = _run_cron(env)

    assert proc.returncode == 75
    assert "another night is running (pid 4242" in proc.stdout  # what cron mails
    assert not (runs / "2026-01-02").exists()


@pytest.mark.parametrize("install", [False, True])
def test_install_cron_prints_or_installs_the_block_for_this_checkout(tmp_path, install):
    crontab = tmp_path / "crontab.txt"
    crontab.write_text("MAILTO=me@example.org\n0 * * * * echo hourly\n"
                       "# >>> overnight\n30 21 * * * cd /old/checkout && x\n# <<< overnight\n")
    fake = tmp_path / "bin" / "crontab"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/bash\nif [ "$1" = "-l" ]; then cat {crontab}; '
                    f"else cat > {crontab}; fi\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}",
           "MAILTO": "night@example.org"}
    proc = subprocess.run(["make", "-s", "-C", str(REPO), "install-cron",
                           *(["INSTALL=1"] if install else [])],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    job = f"30 21 * * * cd {REPO} && scripts/cron-night.sh"
    if not install:
        assert job in proc.stdout and "MAILTO=night@example.org" in proc.stdout
        assert "/old/checkout" in crontab.read_text()  # untouched
        return
    installed = crontab.read_text()
    assert installed.count("# >>> overnight") == 1 and job in installed
    assert "/old/checkout" not in installed and "0 * * * * echo hourly" in installed
