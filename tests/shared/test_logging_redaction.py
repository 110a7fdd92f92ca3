"""No secret reaches a log line (issue 15): runtime tokens in paths and URLs, API keys, the admin token.

The logging is configured exactly as a service configures it, in a child process whose stderr is captured.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import textwrap
from pathlib import Path

from shared.logging import redact

REPO = Path(__file__).resolve().parents[2]
TOKEN = "r1.42.7.1999999999.Zm9vYmFyYmF6cXV4cXV1eA"
KEY = "mc_live_" + "k" * 40


def test_redact_keeps_the_shape_of_a_path_and_drops_the_secret() -> None:
    assert redact(f"/learn/player/{TOKEN}") == "/learn/player/[redacted]"
    assert redact(f"/learn/content/{TOKEN}/sco/index.html?x=1") == "/learn/content/[redacted]/sco/index.html?x=1"
    assert redact(f"POST http://127.0.0.1:8084/learn/runtime/{TOKEN}/commit") == \
        "POST http://127.0.0.1:8084/learn/runtime/[redacted]/commit"
    assert redact(f"launch_url=https://content.example.com/x?t={TOKEN}") == \
        "launch_url=https://content.example.com/x?t=[redacted]"
    assert redact(f"Authorization: Bearer {KEY}") == "Authorization: Bearer [redacted]"
    # route templates and public ids are not secrets
    assert redact("/learn/runtime/{token}/commit") == "/learn/runtime/{token}/commit"
    assert redact("/verify/" + "v" * 40) == "/verify/" + "v" * 40


def test_every_log_line_of_a_configured_service_is_redacted() -> None:
    script = textwrap.dedent(f"""
        import logging
        from shared.logging import configure_logging, get_logger
        configure_logging("scorm", "debug", True)
        log = get_logger("t")
        log.warning("request", path="/learn/content/{TOKEN}/index.html", route="/learn/player/{{token}}")
        try:
            raise ValueError("bad url http://x/learn/runtime/{TOKEN}/finish")
        except ValueError:
            log.exception("unhandled_error", path="/learn/runtime/{TOKEN}/commit")
        try:
            raise ConnectionError("{KEY}")
        except ConnectionError:
            logging.getLogger("aiohttp.server").exception("Error handling %s", "/learn/player/{TOKEN}")
        log.info("upstream", error=ValueError("/learn/player/{TOKEN}"))
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in os.environ.items() if not k.startswith("LEARN_")})
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert [line["event"] for line in lines] == ["request", "unhandled_error", "Error handling /learn/player/"
                                                 "[redacted]", "upstream"], result.stderr
    assert TOKEN not in result.stderr and TOKEN.rsplit(".", 1)[1] not in result.stderr
    assert KEY not in result.stderr
    assert "Traceback" in result.stderr and result.stderr.count("[redacted]") >= 6
    assert lines[0]["route"] == "/learn/player/{token}"


def _gateway_env(tmp_path: Path, postgres: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEARN_")}
    env.update({"LEARN_DATA_DIR": str(tmp_path / "data"), "LEARN_GATEWAY_PORT": "0",
                "LEARN_RUN_MIGRATIONS_ON_START": "false", "LEARN_POSTGRES_URL": postgres,
                "LEARN_DATABASE_PREFIX": "announce_never_created_"})
    return env


def _announce(tmp_path: Path, *, tty: bool) -> tuple[str, str]:
    """Run the gateway's start-up announcement (as ``create_app`` does on start) with stderr a pipe or a terminal;
    returns (what stderr got, the token in the file)."""
    script = textwrap.dedent("""
        import asyncio
        from services.gateway.app import create_app
        from services.gateway.config import GatewaySettings
        app = create_app(GatewaySettings())
        async def main():
            for hook in app.on_startup:
                await hook(app)
        asyncio.run(main())
    """)
    env = _gateway_env(tmp_path, "postgresql://nobody@127.0.0.1:1/none")
    if tty:
        leader, follower = pty.openpty()
        returncode = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, stderr=follower,
                                    stdout=subprocess.DEVNULL, timeout=60).returncode
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(leader)
        output = b"".join(chunks).decode(errors="replace")
    else:
        done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=60)
        returncode, output = done.returncode, done.stderr
    assert returncode == 0, output
    token = (tmp_path / "data" / "admin_token").read_text().strip()
    return output, token


def test_the_generated_admin_token_never_reaches_the_log_and_shows_only_on_a_terminal(tmp_path: Path) -> None:
    output, token = _announce(tmp_path / "pipe", tty=False)
    assert token not in output  # a container's stderr is the log stream
    assert "admin_token_generated" in output and str(tmp_path / "pipe" / "data" / "admin_token") in output
    output, token = _announce(tmp_path / "tty", tty=True)
    printed = [line for line in output.splitlines() if token in line]
    assert len(printed) == 1 and not printed[0].lstrip().startswith("{"), output  # once, and not a JSON log line
    assert all(token not in line for line in output.splitlines() if line.lstrip().startswith("{"))
