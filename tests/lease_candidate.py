"""A replica competing for a Lease, as a service's host does (ach_platform.leadership), run as its own
process so a test can stop it gracefully (SIGTERM) or kill it (SIGKILL). Prints "leading" and
"following" as that changes. Configured like a pod: ACH_LEADER_ELECTION, POD_NAME, POD_NAMESPACE,
ACH_LEASE_*, and KUBECONFIG (the service account's token)."""

from __future__ import annotations

import asyncio
import signal

from ach_platform.leadership import Leadership


async def main() -> None:
    def changed(leading: bool) -> None:
        print("leading" if leading else "following", flush=True)

    leadership = Leadership.from_settings("candidate", on_change=changed)

    async def work() -> None:  # the singleton work: runs only while leading
        await asyncio.Event().wait()

    leadership.add(work)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    campaign = asyncio.create_task(leadership.campaign())
    print("started", flush=True)
    await stop.wait()
    await leadership.resign()
    await campaign
    print("stopped", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
