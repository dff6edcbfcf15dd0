"""Replay the recorded remote.Commands the way the engine schedules them: each as soon as every Command it
depends on has finished, independent ones at the same time (`pulumi up` runs them in parallel).

Besides being faster on slow guests, this checks what a sequential replay cannot: that the declared
dependencies alone order the steps correctly (a missing depends_on shows up as a failing step here).
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from hyperscaler.mocks import Registration
from tests.integration.replay import COMMAND, Ran, SshRunner, pinned_host_key

PARALLELISM = 8


def replay_concurrently(records: list[Registration], ssh: SshRunner, field: str = "create") -> list[Ran]:
    commands = {r.urn: r for r in records if r.type == COMMAND}
    waiting = {urn: {d for d in rec.depends_on if d in commands} for urn, rec in commands.items()}
    done: set[str] = set()
    ran: list[Ran] = []
    errors: list[str] = []

    def run(rec: Registration) -> Ran | None:
        inputs = rec.plain_inputs
        command = inputs.get(field)
        if not command:
            return None
        host = inputs["connection"]["host"]
        proc = ssh(host, str(command), inputs.get("stdin"), pinned_host_key(rec))
        if proc.returncode != 0:
            raise AssertionError(f"{rec.name} on {host} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return Ran(rec.name, host, proc.stdout)

    with ThreadPoolExecutor(max_workers=PARALLELISM) as pool:
        running: dict[Future[Ran | None], str] = {}
        while waiting or running:
            if not errors:  # after a failure, start nothing new (the engine stops too)
                for urn in [u for u, deps in waiting.items() if deps <= done]:
                    running[pool.submit(run, commands[urn])] = urn
                    del waiting[urn]
            if not running:
                if errors:
                    break
                raise AssertionError(f"dependency cycle among {sorted(waiting)}")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                urn = running.pop(future)
                try:
                    result = future.result()
                except AssertionError as exc:
                    errors.append(str(exc))
                    continue
                done.add(urn)
                if result is not None:
                    ran.append(result)
    if errors:
        raise AssertionError("\n".join(errors))
    return ran
