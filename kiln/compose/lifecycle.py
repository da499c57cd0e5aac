"""`kiln compose up|down|ps|logs`: a project's services as detached instances on its private networks.

    $KILN_HOME/compose/<project>/project.json   the services and the instance each one runs as
    $KILN_HOME/compose/<project>/networks/NET/switch.sock
                                                a network of the project (kiln.compose.switch); in a short
                                                directory of its own when that path is too long for a
                                                socket's address (kiln.paths.socket_dir)
    $KILN_HOME/compose/<project>/networks/NET/switch.pid  its switch's record (kiln.daemon)
    $KILN_HOME/compose/<project>/volumes/NAME/  named volumes (kept by `down`, removed by `down -v`)
    $KILN_HOME/compose/<project>/secrets/SVC/   a service's secrets' files (kiln.compose.secrets; `down`
                                                removes them)

Each service runs as the instance `<project>-<service>` under the usual supervisor and restart
policy, on the qemu target, with a NIC on each of its networks (eth1, eth2, ... in the order the
file gives them), each network a switch of its own: the networks, sorted by name, are 10.89.0.0/24,
10.89.1.0/24, ..., and on each the services on it, sorted by name, get .2, .3, ... A guest's
/etc/hosts names the services (and their aliases) it shares a network with, and no other: a
service reaches another only through a network they share. Published ports stay on the first NIC
(QEMU's user network), as with `kiln run -p`; a service only on `internal: true` networks gets
that NIC restricted to them (no way out).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from kiln import atomic
from kiln.compose import secrets as secrets_mod
from kiln.compose.project import Healthcheck, Project, Service
from kiln.daemon import Daemon
from kiln.errors import KilnError, TargetError, UsageError
from kiln.guest.protocol import ControlChannel
from kiln.paths import forget_socket_dir, home_dir, socket_dir
from kiln.runtime import instance as instances
from kiln.runtime import manage
from kiln.store import Store
from kiln.targets.base import BindMount, Lan, RunConfig, VolumeMap

if TYPE_CHECKING:  # the build pipeline is imported by `up`, which builds; ps, logs and down never need it
    from kiln import build as api
    from kiln.oci.image import Overrides

SUBNET = "10.89"
PREFIX = 24
SWITCH_START, SWITCH_STOP = 10.0, 5.0  # seconds
HEALTH_TIMEOUT = 180.0  # seconds a service has to become healthy (TCG boots are slow)
Say = Callable[[str], None]


def project_dir(name: str) -> Path:
    return home_dir("compose") / name


def instance_name(project: Project, service: str) -> str:
    """PROJECT-SERVICE, or the service's container_name."""
    return project.services[service].container_name or f"{project.name}-{service}"


def addresses(project: Project) -> dict[str, dict[str, str]]:
    """Network -> service -> its address there (sorted names: stable across ups)."""
    out = {}
    for k, net in enumerate(sorted(project.networks)):
        names = sorted(s for s, svc in project.services.items() if any(n == net for n, _ in svc.networks))
        if len(names) > 250:
            raise UsageError(f"network {net} has more than 250 services")
        out[net] = {name: f"{SUBNET}.{k}.{i + 2}" for i, name in enumerate(names)}
    return out


def _hosts(project: Project, addrs: dict[str, dict[str, str]], net: str) -> tuple[tuple[str, str], ...]:
    """The names a guest resolves on one of its networks: the services there, and their aliases."""
    out = []
    for peer, ip in sorted(addrs[net].items()):
        out.append((peer, ip))
        out += [(alias, ip) for alias in dict(project.services[peer].networks).get(net, ())]
    return tuple(out)


# -- the switch ------------------------------------------------------------------------------------


@dataclass
class SwitchProcess:
    """One network's switch (kiln.compose.switch), a kiln daemon."""

    directory: Path

    @property
    def socket(self) -> Path:
        return socket_dir(self.directory) / "switch.sock"

    @property
    def daemon(self) -> Daemon:
        return Daemon(self.directory, "switch", "kiln.compose.switch", [str(self.socket)])

    def pid(self) -> int | None:
        record = self.daemon.running()
        return None if record is None else record.pid

    def start(self) -> None:
        if self.pid() is not None and self.socket.exists():
            return
        try:
            self.daemon.start("the project's network", self.socket.exists, SWITCH_START)
        except KilnError as err:
            raise TargetError(str(err)) from None

    def stop(self) -> None:
        self.daemon.stop(SWITCH_STOP)
        self.socket.unlink(missing_ok=True)
        forget_socket_dir(self.directory)


# -- up --------------------------------------------------------------------------------------------


def registry_reference(image: str) -> str:
    """An image as Docker names it: `redis:7` is docker.io/library/redis:7, `host:5000/a/b` is that registry's."""
    name = image.removeprefix("docker://")
    first = name.split("/", 1)[0]
    if "/" not in name or not ("." in first or ":" in first or first == "localhost"):
        name = f"docker.io/{name if '/' in name else 'library/' + name}"
    last = name.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        name += ":latest"
    return f"docker://{name}"


def _overrides(service: Service) -> Overrides:
    """What the service says over its image's config, as docker run's flags do."""
    from kiln.oci.image import Overrides

    return Overrides(
        entrypoint=service.entrypoint,
        args=tuple(service.command) if service.command else None,
        ports=tuple(service.expose),
        user=service.user,
        workdir=service.working_dir,
    )


def source_of(service: Service) -> api.Source:
    """What the build API makes the service's image from: its build context (built as kiln.discover says,
    or by its Dockerfile), or its image."""
    from kiln import build as api
    from kiln.discover import needs_builder

    if service.build is not None:
        b = service.build
        itself = b.dockerfile is None and b.target is None and not b.args and needs_builder(b.context) is None
        if itself and service.overrides:
            raise UsageError(
                f"services.{service.name}: kiln builds {b.context} itself, and its command is its own "
                "(kiln.toml, a Procfile): command, entrypoint, working_dir, user and expose go with an image"
            )
        if itself:
            return api.AppSource(b.context)
        dockerfile = b.dockerfile or b.context / "Dockerfile"
        return api.DockerfileSource(b.context, dockerfile, b.target, dict(b.args), _overrides(service))
    assert service.image is not None
    return api.ImageSource(registry_reference(service.image), _overrides(service))


def shares_needed(service: Service) -> tuple[tuple[str, str], ...]:
    """The kernel features the service's run hands its guest beyond its image's own analysis: 9p for its
    secrets, binds and volumes (QEMU's shares), as BuildOptions.needs."""
    what = [name for name, used in (("secrets", service.secrets), ("volumes and binds", service.volumes)) if used]
    return (("9p", f"compose: service {service.name}'s {' and '.join(what)}"),) if what else ()


def _has_features(store: Store, ref: str, needs: tuple[tuple[str, str], ...]) -> bool:
    features = set(store.image(ref).manifest.kernel.features)
    return all(feature in features for feature, _ in needs)


def _ensure_image(
    store: Store, service: Service, project: Project, rebuild: bool, say: Say, progress: api.Progress | None
) -> str:
    """The service's image: kiln's store's, else built as kiln.discover and kiln.oci decide (cached under the
    project's name for the service: `compose up --build` builds it again), with a kernel that takes what the
    service is handed at run time (shares_needed)."""
    needs = shares_needed(service)
    if service.image and service.build is None and not service.overrides:
        try:
            fits: bool | None = _has_features(store, service.image, needs)  # a kiln image the store has
        except KilnError:
            fits = None  # none: the image is built from its registry's
        if fits:
            return service.image
        if fits is False:
            raise UsageError(
                f"services.{service.name}: kiln image {service.image} was built with no 9p in its kernel, which the "
                "secrets, binds and volumes compose hands it need: name its source in build:, and compose builds "
                "it with 9p"
            )
    ref = service.image if service.build is not None and service.image else f"{project.name}-{service.name}"
    have = True
    try:
        have = _has_features(store, ref, needs)  # one built before the service had them is built again
    except KilnError:
        have = False
    if have and not rebuild:
        return ref
    from kiln import build as api

    source = source_of(service)
    say(f"building {service.name} from {_describe(source)}")
    try:
        api.build(source, api.BuildOptions(tag=ref, needs=needs), store, progress or api.QUIET)
    except KilnError as err:
        if service.build:
            raise KilnError(f"service {service.name}: the build of {service.build.context} failed: {err}") from err
        raise KilnError(f"service {service.name}: image {service.image} is not in the store, and building it failed: "
                        f"{err}") from err  # fmt: skip
    return ref


def _describe(source: api.Source) -> str:
    from kiln import build as api

    if isinstance(source, api.AppSource):
        return str(source.path)
    if isinstance(source, api.DockerfileSource):
        return f"{source.dockerfile}{f' (target {source.target})' if source.target else ''}"
    assert isinstance(source, api.ImageSource)
    return source.reference


def _run_config(
    project: Project, service: Service, switches: dict[str, SwitchProcess], addrs: dict[str, dict[str, str]],
    declared: tuple[str, ...],
) -> RunConfig:  # fmt: skip
    """The service's run: `declared`, the volumes its image declares (a bind there is that volume's host
    directory; anywhere else, it is bound over what the image holds)."""
    volumes, binds = [], []
    for kind, source, target, read_only in service.volumes:
        if kind == "volume":
            host = project_dir(project.name) / "volumes" / source
            host.mkdir(parents=True, exist_ok=True)
            volumes.append(VolumeMap(host=host, guest=target))
        elif target in declared and Path(source).is_dir():
            volumes.append(VolumeMap(host=Path(source), guest=target))
        else:
            binds.append(BindMount(host=Path(source), guest=target, read_only=read_only))
    secrets_dir = project_dir(project.name) / "secrets" / service.name
    lans = []
    for net, _aliases in service.networks:  # in the file's order: eth1, eth2, ...
        me = addrs[net][service.name]
        _, _, k, host = me.split(".")
        mac = f"52:54:00:89:{int(k):02x}:{int(host):02x}"
        lans.append(Lan(socket=switches[net].socket, address=f"{me}/{PREFIX}", mac=mac,
                        hosts=_hosts(project, addrs, net)))  # fmt: skip
    return RunConfig(
        ports=service.ports,
        volumes=tuple(volumes),
        binds=tuple(binds),
        tmpfs=service.tmpfs,
        memory_mib=service.memory_mib,
        extra_env=dict(service.environment),
        lans=tuple(lans),
        isolated=all(project.networks[net].internal for net, _ in service.networks),
        snapshot="never",
        stop_signal=service.stop_signal,
        secrets=secrets_mod.stage(secrets_dir, project.secrets, service.secrets),
    )


def _console_tail(inst: instances.Instance, lines: int = 15) -> str:
    try:
        text = inst.console_log.read_text(errors="replace")
    except OSError:
        return "(no console output)"
    return "\n".join(text.rstrip().splitlines()[-lines:])


def check_health(inst: instances.Instance, check: Healthcheck) -> bool:
    """One healthcheck, run inside the guest by init (its ports need not be published)."""
    try:
        with ControlChannel(inst.control_socket, timeout=check.timeout) as channel:
            if check.kind == "tcp":
                return channel.listening([check.port], timeout=check.timeout)
            if check.kind != "http":  # postgres, mysql, redis: in the server's own protocol
                return channel.probe(check.kind, check.port, timeout=check.timeout) is None
            status = channel.http_status(check.port, check.path, timeout=check.timeout)
            return status is not None and 200 <= status < 400
    except TargetError:
        return False


def wait_completed(inst: instances.Instance, service: str, timeout: float = HEALTH_TIMEOUT) -> None:
    """Until the service's app has ended (a migration, a set-up job): with status 0, or a one-line error."""
    deadline = time.monotonic() + timeout
    while (st := inst.state()).status != "exited":
        if time.monotonic() > deadline:
            raise TargetError(f"service {service} did not complete within {timeout:.0f} s")
        time.sleep(0.5)
    if st.exit_code != 0:
        raise TargetError(f"service {service} did not complete successfully (exit status {st.exit_code}); its last "
                          f"console lines:\n{_console_tail(inst)}")  # fmt: skip


def wait_healthy(inst: instances.Instance, service: Service, timeout: float = HEALTH_TIMEOUT) -> None:
    """As Compose does: failures in the first `start_period` do not count; then `retries` failures
    in a row make the service unhealthy. `timeout` bounds the whole wait."""
    assert service.healthcheck is not None
    check = service.healthcheck
    began = time.monotonic()
    failures = 0
    while True:
        if not inst.running():
            raise TargetError(f"service {service.name} stopped before it was healthy; its last console lines:\n"
                              f"{_console_tail(inst)}")  # fmt: skip
        if check_health(inst, check):
            return
        elapsed = time.monotonic() - began
        if elapsed >= check.start_period:
            failures += 1
        if failures >= max(1, check.retries) or elapsed > timeout:
            what = f"{check.kind.upper()} {check.port}{check.path if check.kind == 'http' else ''}"
            raise TargetError(f"service {service.name} never became healthy ({what}, {failures} checks failed "
                              f"after {elapsed:.0f} s); its last console lines:\n{_console_tail(inst)}")  # fmt: skip
        time.sleep(check.interval)


def up(
    project: Project,
    store: Store,
    say: Say,
    services: list[str] | None = None,
    rebuild: bool = False,
    progress: api.Progress | None = None,
) -> None:
    """Start the project's services (or `services` and what they depend on) in dependency order."""
    order = project.order()
    if services:
        unknown = sorted(set(services) - set(project.services))
        if unknown:
            raise UsageError(f"no service named {', '.join(unknown)} in project {project.name}")
        wanted: set[str] = set()
        todo = list(services)
        while todo:
            name = todo.pop()
            if name not in wanted:
                wanted.add(name)
                todo.extend(project.services[name].depends_on)
        order = [s for s in order if s in wanted]
    refs = {name: _ensure_image(store, project.services[name], project, rebuild, say, progress) for name in order}
    directory = project_dir(project.name)
    directory.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(
        directory / "project.json",
        json.dumps({"name": project.name, "directory": str(project.directory),
                    "services": {s: instance_name(project, s) for s in project.services},
                    "labels": {s: v.labels for s, v in project.services.items() if v.labels},
                    "healthchecks": {s: dataclasses.asdict(v.healthcheck) for s, v in project.services.items()
                                     if v.healthcheck}}, indent=2).encode(),
    )  # fmt: skip
    nets = sorted({net for name in order for net, _ in project.services[name].networks})
    switches = {net: SwitchProcess(directory / "networks" / net) for net in nets}
    had = {net for net, switch in switches.items() if switch.pid() is not None}
    new: list[SwitchProcess] = []
    addrs = addresses(project)
    started: list[instances.Instance] = []
    try:
        for net in nets:
            switches[net].start()
            if net not in had:
                new.append(switches[net])
        _start_all(project, store, say, order, refs, switches, addrs, started)
    except BaseException:
        # nothing half-started: what this `up` started goes again, and so does a network it created
        for inst in reversed(started):
            with contextlib.suppress(KilnError):
                manage.remove(inst, force=True)
        for switch in new:  # the networks this up created
            switch.stop()
        if started:
            say(f"stopped what this up started: {', '.join(i.name for i in started)}")
        raise


def _start_all(
    project: Project,
    store: Store,
    say: Say,
    order: list[str],
    refs: dict[str, str],
    switches: dict[str, SwitchProcess],
    addrs: dict[str, str],
    started: list[instances.Instance],
) -> None:
    for name in order:
        service = project.services[name]
        for dep, condition in sorted(service.depends_on.items()):
            dep_inst = instances.get(instance_name(project, dep))
            if condition == "service_healthy":
                say(f"waiting for {dep} to be healthy")
                wait_healthy(dep_inst, project.services[dep])
            elif condition == "service_completed_successfully":
                say(f"waiting for {dep} to complete")
                wait_completed(dep_inst, dep)
        inst_name = instance_name(project, name)
        try:
            existing: instances.Instance | None = instances.get(inst_name)
        except KilnError:
            existing = None
        if existing is not None and existing.running():
            say(f"{name}: running ({inst_name})")
            continue
        if existing is not None:
            manage.remove(existing, force=True)  # exited: start it afresh, with this file's settings
        manifest = store.image(refs[name]).manifest
        cfg = _run_config(project, service, switches, addrs, manifest.entry.volumes)
        if not manifest.kernel.network and not service.ports:  # a job that uses no socket: on no network
            cfg = msgspec.structs.replace(cfg, lans=(), isolated=False)
        try:
            inst, notes = manage.run_detached(
                store, refs[name], "qemu", cfg, instances.RestartPolicy.parse(service.restart), inst_name
            )
        except BaseException:
            with contextlib.suppress(KilnError):  # created, but it did not start
                started.append(instances.get(inst_name))
            raise
        started.append(inst)
        for note in notes:
            say(note)
        where = ", ".join(f"{addrs[net][name]} on {net}" for net, _ in service.networks) if cfg.lans else "no network"
        say(f"{name}: started ({inst.name}, {where})")


# -- down, ps, logs --------------------------------------------------------------------------------


def members(name: str) -> dict[str, str]:
    """Service -> instance name, as the last `up` recorded them."""
    try:
        data = json.loads((project_dir(name) / "project.json").read_text())
    except (OSError, ValueError):
        raise UsageError(f"no compose project {name} (kiln compose up starts one)") from None
    return dict(data["services"])


def down(name: str, say: Say, volumes: bool = False) -> None:
    for service, inst_name in sorted(members(name).items()):
        try:
            inst = instances.get(inst_name)
        except KilnError:
            continue
        manage.remove(inst, force=True)
        say(f"{service}: removed ({inst_name})")
    directory = project_dir(name)
    for net in sorted((directory / "networks").glob("*")) if (directory / "networks").is_dir() else ():
        SwitchProcess(net).stop()
    for entry in directory.iterdir():
        if entry.name == "volumes" and not volumes:
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    if not any(directory.iterdir()):
        directory.rmdir()
    if volumes:
        say("named volumes removed")


def _healthchecks(name: str) -> dict[str, Healthcheck]:
    try:
        data = json.loads((project_dir(name) / "project.json").read_text())
        return {s: Healthcheck(**h) for s, h in (data.get("healthchecks") or {}).items()}
    except (OSError, ValueError, TypeError):
        return {}


def status(name: str) -> list[dict[str, object]]:
    """Each service's instance, state, ports and address; and, for a running one with a healthcheck, its health
    now (healthy or unhealthy: one check, as `docker compose ps` shows the last)."""
    rows = []
    checks = _healthchecks(name)
    for service, inst_name in sorted(members(name).items()):
        try:
            inst = instances.get(inst_name)
        except KilnError:
            rows.append({"service": service, "instance": inst_name, "state": "not created", "ports": []})
            continue
        st = inst.state()
        check = checks.get(service)
        health = None
        if check is not None and st.status == "running":
            health = "healthy" if check_health(inst, check) else "unhealthy"
        rows.append({"service": service, "instance": inst_name, "state": st.status,
                     "ports": [str(p) for p in inst.config.run.ports],
                     "address": inst.config.run.lans[0].address if inst.config.run.lans else None,
                     "addresses": [lan.address for lan in inst.config.run.lans],
                     "health": health})  # fmt: skip
    return rows


def logs(name: str, services: list[str]) -> list[tuple[str, str]]:
    """(service, console text) for `services` (all when empty)."""
    found = members(name)
    unknown = sorted(set(services) - set(found))
    if unknown:
        raise UsageError(f"no service named {', '.join(unknown)} in project {name}")
    out = []
    for service in services or sorted(found):
        try:
            text = instances.get(found[service]).console_log.read_text(errors="replace")
        except (KilnError, OSError):
            text = ""
        out.append((service, text))
    return out
