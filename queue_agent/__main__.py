"""``python -m queue_agent``: settings from the environment (once), clients, health endpoint, loop.

Exit codes: 0 after a drain (SIGTERM, SIGINT or GET /drain followed by SIGTERM), 2 on invalid settings,
1 if the loop died.
"""

from __future__ import annotations

import logging
import sys
import threading

import boto3
import httpx
from botocore.config import Config
from pydantic import ValidationError
from pydantic_settings import SettingsError

from queue_agent.agent import Agent
from queue_agent.health import HealthServer, Probes
from queue_agent.settings import AgentSettings
from queue_agent.shutdown import install_signal_handlers
from queue_agent.telemetry import configure_logging, configure_tracing

log = logging.getLogger("queue_agent")


def build_agent(settings: AgentSettings) -> Agent:
    session = boto3.Session(region_name=settings.aws_region)
    client_config = Config(
        retries={"mode": "standard", "max_attempts": 4},
        # The long poll waits up to 20 s; the read timeout must be longer than any WaitTimeSeconds.
        read_timeout=30,
        connect_timeout=5,
        max_pool_connections=16,
    )
    # trust_env=False: no HTTP(S)_PROXY detour, neither for localhost nor for vetted input addresses.
    runtime_http = httpx.Client(base_url=settings.runtime_url, trust_env=False)
    input_http = httpx.Client(trust_env=False, follow_redirects=False, http2=False)
    return Agent(
        settings,
        session=session,
        runtime_http=runtime_http,
        input_http=input_http,
        client_config=client_config,
    )


def main() -> int:
    try:
        settings = AgentSettings()  # required fields come from the environment
    except ValidationError as exc:
        configure_logging()
        log.error("invalid agent settings", extra={"errors": exc.errors(include_url=False)})
        return 2
    except SettingsError as exc:  # e.g. EASEL_MODELS is not JSON
        configure_logging()
        log.error("invalid agent settings", extra={"errors": str(exc)})
        return 2
    configure_logging(settings.agent_log_level)
    configure_tracing()
    agent = build_agent(settings)
    install_signal_handlers(agent.shutdown)
    health = HealthServer(
        Probes(
            ready=agent.ready_state,
            live=agent.live_state,
            drain=agent.drain,
            stats=agent.stats.snapshot,
            drain_timeout=settings.agent_shutdown_grace_seconds + 30,
        ),
        host=settings.agent_host,
        port=settings.agent_port,
        control_peers=settings.agent_control_peers,
    ).start()
    log.info(
        "queue agent starting",
        extra={
            "runtime": settings.runtime,
            "runtime_url": settings.runtime_url,
            "agent_port": health.port,
            "models": sorted(settings.models),
        },
    )
    code = run_until_drained(agent)
    if code != 0:
        return code
    if agent.shutdown.reason == "drain":
        # Drained by GET /drain (preStop): stay up, idle and unready, until the kubelet's SIGTERM.
        stopped = threading.Event()
        install_signal_handlers_for(stopped)
        stopped.wait()
    health.stop()
    log.info("queue agent stopped", extra={"exit_code": code})
    return code


def run_until_drained(agent: Agent) -> int:
    """Run the loop in a thread so this (signal-handling) thread can enforce a hard deadline: a runtime
    that ignores its interrupt must not keep the pod from exiting. Past the grace period plus twice
    EASEL_AGENT_INTERRUPT_WAIT_SECONDS every held message is returned and the process exits 0 anyway."""
    hard_exit_after = 2 * agent.settings.agent_interrupt_wait_seconds
    result: list[int] = []

    def target() -> None:
        try:
            result.append(agent.run())
        except Exception:
            result.append(1)

    loop = threading.Thread(target=target, name="agent-loop", daemon=True)
    loop.start()
    while loop.is_alive():
        loop.join(0.2)
        if agent.shutdown.requested.is_set() and agent.shutdown.past_grace(hard_exit_after):
            returned = agent.release_all()
            log.error("loop stuck past the grace period; exiting", extra={"returned_messages": returned})
            return 0
    return result[0] if result else 1


def install_signal_handlers_for(event: threading.Event) -> None:
    import signal

    signal.signal(signal.SIGTERM, lambda *_: event.set())
    signal.signal(signal.SIGINT, lambda *_: event.set())


if __name__ == "__main__":
    sys.exit(main())
