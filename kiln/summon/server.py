"""The summoner's event loop: listen for every service, summon on demand, proxy, scale to zero.

A connection to a service's host port is accepted at once and *held*: if the
service has no running instance, one is summoned (restored from its snapshot,
or booted cold) and the connection is handed over, through a proxy to the
VM's loopback forward, once the guest's port listens. Many first connections
to one service share one summon. An instance with no open connection and no
bytes for `idle` is stopped; `max_running` bounds how many run at once (the
least recently used idle one makes room); an instance that dies is summoned
again by the next connection. Optionally, as Jitsu, a DNS A query for
NAME.DOMAIN answers with the summoner's address and summons NAME.

`python -m kiln.summon.server DIR` runs a detached summoner (kiln summon -d)
from DIR/config.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path

from kiln.errors import KilnError, TargetError
from kiln.store import Store
from kiln.summon import vms
from kiln.summon.config import Service, SummonConfig, split_address
from kiln.summon.metrics import Metrics
from kiln.targets.ports import check_free
from kiln.targets.relay import relay, reset

REAP_EVERY = 0.25  # seconds between looks for idle and dead instances


def _log(text: str) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    print(f"{stamp} {text}", flush=True)


class Summoner:
    def __init__(self, cfg: SummonConfig, store: Store | None = None, log: Callable[[str], None] = _log) -> None:
        self.cfg = cfg
        self.store = store or Store()
        self.log = log
        self.services = {s.name: s for s in cfg.service}
        self.images = {s.name: self.store.image(s.image) for s in cfg.service}  # a bad name fails here
        self.running: dict[str, vms.SummonedVm] = {}
        self.pending: dict[str, asyncio.Future[vms.SummonedVm]] = {}
        self.metrics = Metrics()
        self.stopping = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    def _spawn(self, coro: Coroutine[object, object, None]) -> asyncio.Task[None]:
        """A background task, kept referenced until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # ---- summoning -------------------------------------------------------------------
    async def ensure(self, svc: Service) -> vms.SummonedVm:
        """The service's running instance, summoned if there is none (one summon, however many ask)."""
        svm = self.running.get(svc.name)
        if svm is not None and not svm.exited:
            return svm
        if svm is not None:
            await self._forget(svm, "exited")
        fut = self.pending.get(svc.name)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            fut.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved even with no waiter
            self.pending[svc.name] = fut
            self._spawn(self._summon(svc, fut))
        return await asyncio.shield(fut)

    async def _summon(self, svc: Service, fut: asyncio.Future[vms.SummonedVm]) -> None:
        began = time.monotonic()
        try:
            await self._make_room(svc)
            svm = await asyncio.to_thread(vms.start, self.store, self.images[svc.name], svc, self.cfg.ready_timeout)
        except Exception as err:  # every failure ends as a line in the log and a reset for the held clients
            reason = "not-ready" if isinstance(err, TargetError) else "error"
            self.metrics.failures.labels(svc.name, reason).inc()
            self.log(f"{svc.name}: summon failed after {time.monotonic() - began:.2f} s: {err}")
            fut.set_exception(err)
        else:
            self.running[svc.name] = svm
            took = time.monotonic() - began
            self.metrics.summons.labels(svc.name, svm.how).inc()
            self.metrics.latency.labels(svc.name).observe(took)
            self.metrics.running.set(len(self.running))
            self.log(f"{svc.name}: summoned ({svm.how}) in {took:.3f} s, pid {svm.vm.proc.pid}")
            fut.set_result(svm)
        finally:
            self.pending.pop(svc.name, None)

    async def _make_room(self, svc: Service) -> None:
        """Stop least recently used idle instances until one more may run."""
        while len(self.running) + len(self.pending) - 1 >= self.cfg.max_running:
            idle = [s for s in self.running.values() if s.active == 0 and s.service.name != svc.name]
            if idle:
                victim = min(idle, key=lambda s: s.last_activity)
                await self._stop(victim, "lru")
            else:  # every instance is busy: wait for one to go idle
                await asyncio.sleep(0.05)

    async def _stop(self, svm: vms.SummonedVm, reason: str) -> None:
        if self.running.get(svm.service.name) is svm:
            del self.running[svm.service.name]
        self.metrics.running.set(len(self.running))
        self.metrics.stops.labels(svm.service.name, reason).inc()
        await asyncio.to_thread(vms.stop, svm, reason)
        self.log(f"{svm.service.name}: stopped ({reason})")

    async def _forget(self, svm: vms.SummonedVm, reason: str) -> None:
        code = svm.vm.proc.returncode
        self.log(f"{svm.service.name}: its VM ended (QEMU status {code}); the next connection summons it again")
        await self._stop(svm, reason)

    async def _reap(self) -> None:
        while not self.stopping.is_set():
            for svm in list(self.running.values()):
                if svm.exited:
                    await self._forget(svm, "exited")
                elif svm.idle_for > self.cfg.idle:
                    await self._stop(svm, "idle")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), REAP_EVERY)

    # ---- connections ---------------------------------------------------------------------
    async def _on_connect(
        self, svc: Service, guest_port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.metrics.held.inc()
        try:
            svm = await self.ensure(svc)
        except Exception:  # logged by _summon
            reset(writer)
            return
        finally:
            self.metrics.held.dec()
        svm.active += 1
        svm.last_activity = time.monotonic()
        try:
            await relay(reader, writer, svm.upstreams[guest_port])
        finally:
            svm.active -= 1
            svm.last_activity = time.monotonic()

    # ---- DNS -------------------------------------------------------------------------------
    def answer_dns(self, data: bytes) -> bytes | None:
        """The reply to one DNS query; an A query for NAME.DOMAIN summons NAME (without waiting for it)."""
        from dnslib import QTYPE, RCODE, RR, A, DNSError, DNSRecord

        assert self.cfg.dns is not None
        try:
            request = DNSRecord.parse(data)
        except DNSError:
            return None
        reply = request.reply()
        domain = self.cfg.dns.domain.lower().strip(".")
        for q in request.questions:
            name = str(q.qname).rstrip(".").lower()
            svc = self.services.get(name.removesuffix("." + domain)) if name.endswith("." + domain) else None
            if svc is None:
                reply.header.rcode = RCODE.NXDOMAIN if name.endswith(domain) else RCODE.REFUSED
                continue
            if q.qtype in (QTYPE.A, QTYPE.ANY):
                reply.add_answer(RR(q.qname, QTYPE.A, rdata=A(self.cfg.dns.address), ttl=self.cfg.dns.ttl))
                self._spawn(self._summon_quietly(svc))
        return reply.pack()

    async def _summon_quietly(self, svc: Service) -> None:
        with contextlib.suppress(Exception):  # a failure is logged by _summon
            await self.ensure(svc)

    # ---- the whole -------------------------------------------------------------------------
    async def serve(self, on_ready: Callable[[], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        check_free([p for s in self.cfg.service for p in s.ports])
        servers = []
        for svc in self.cfg.service:
            self._describe(svc)
            for p in svc.ports:
                handler = functools.partial(self._on_connect, svc, p.guest)
                servers.append(await asyncio.start_server(handler, p.host_ip, p.host, reuse_address=True, backlog=512))
        transport = None
        if self.cfg.dns:
            host, port = split_address(self.cfg.dns.listen, "dns listen")
            summoner = self

            class Dns(asyncio.DatagramProtocol):
                def connection_made(self, t: asyncio.BaseTransport) -> None:
                    self.transport = t

                def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                    if (answer := summoner.answer_dns(data)) is not None:
                        self.transport.sendto(answer, addr)  # type: ignore[attr-defined]

            try:
                transport, _ = await loop.create_datagram_endpoint(Dns, local_addr=(host, port))
            except OSError as err:
                raise TargetError(f"cannot answer DNS on {host}:{port}: {err.strerror}") from None
            self.log(f"dns: answering A queries for *.{self.cfg.dns.domain} on udp {host}:{port}")
        if self.cfg.metrics:
            host, port = split_address(self.cfg.metrics, "metrics")
            try:
                self.metrics.serve(host, port)
            except OSError as err:
                raise TargetError(f"cannot serve metrics on {host}:{port}: {err.strerror}") from None
            self.log(f"metrics: http://{host}:{port}/metrics")
        reaper = asyncio.create_task(self._reap())
        self.log(f"ready: {len(self.cfg.service)} service(s), idle {self.cfg.idle:g} s, max {self.cfg.max_running}")
        if on_ready:
            on_ready()
        try:
            await self.stopping.wait()
        finally:
            for server in servers:
                server.close()
            if transport:
                transport.close()
            await reaper
            for svm in list(self.running.values()):
                await self._stop(svm, "shutdown")
            self.log("summoner stopped")

    def _describe(self, svc: Service) -> None:
        from kiln.targets.base import RunConfig
        from kiln.targets.qemu import QemuTarget

        image = self.images[svc.name]
        plan = QemuTarget(self.store).plan(image, RunConfig(memory_mib=svc.memory))  # checks the snapshot once
        for note in plan.notes:
            self.log(f"{svc.name}: {note}")
        how = "restores its snapshot" if plan.restore else "boots cold (no snapshot: kiln snapshot makes one)"
        ports = ", ".join(str(p) for p in svc.ports)
        self.log(f"{svc.name}: {image.ref} on {ports}; a summon {how}")


def run(cfg: SummonConfig, on_ready: Callable[[], None] | None = None) -> None:
    asyncio.run(Summoner(cfg).serve(on_ready))


def main() -> int:
    """A detached summoner: python -m kiln.summon.server DIR (DIR/config.json, written by kiln summon -d)."""
    if len(sys.argv) != 2:
        print("usage: python -m kiln.summon.server DIR", file=sys.stderr)
        return 2
    directory = Path(sys.argv[1])
    from kiln import daemon

    daemon.announce(directory, "summoner")
    cfg = SummonConfig.model_validate(json.loads((directory / "config.json").read_text()))
    try:
        run(cfg, on_ready=lambda: (directory / "ready").write_text("ok\n"))
    except KilnError as err:
        print(f"kiln summon: error: {err}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
