"""The build API: one source of any kind -> one image in the store, audited where it applies.

    build(source, options, store, progress) -> BuildResult

    AppSource(path)          a directory or .py file: kiln.discover reads it into an App (one that only
                             a Dockerfile can build, e.g. a Node app, goes as a DockerfileSource)
    NativeSource(config)     a native program: --exe PATH or --deb PACKAGE (kiln.image.native)
    ImageSource(reference)   a container image: docker://, oci:, docker-archive:... (kiln.oci.build)
    DockerfileSource(...)    a Dockerfile built by buildah, then as a container image

`kiln build` turns its flags into one call; `kiln compose up` makes one call per service it builds,
in-process, and gets KilnErrors as objects. The options (kiln.image.options.BuildOptions) and the
Progress reporter are the same for every kind of source: a new kind of input is a new Source and a
new builder, never a flag threaded through the old ones.

The import audit: a Python app with ports is run once on the unix target with its imports profiled
(kiln.check). A module it imports that the image lacks fails the build and undoes the image (the tag
goes back to where it was); an app that never answers is only not audited, in one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from kiln import check as audit
from kiln.config import App, AppConfig, NativeConfig
from kiln.discover import load_app, needs_builder
from kiln.errors import AnalysisError, KilnError, TargetError, UsageError
from kiln.image.build import Built, build_python
from kiln.image.native import build_native
from kiln.image.options import QUIET, BuildOptions, Progress
from kiln.manifest import Manifest
from kiln.oci.build import build_dockerfile, build_image
from kiln.oci.image import Overrides
from kiln.store import Ref, Store
from kiln.targets.portmap import PortMap
from kiln.targets.ports import check_free

__all__ = [
    "QUIET", "AppSource", "BuildOptions", "BuildResult", "DockerfileSource", "ImageSource", "NativeSource", "Progress",
    "build",
]  # fmt: skip


@dataclass(frozen=True)
class AppSource:
    path: Path  # a directory (kiln.toml, pyproject.toml, a Procfile, a Dockerfile's command...) or a .py file
    overrides: Overrides | None = None  # docker run's, for a directory only its Dockerfile builds


ONE_APP = "give one APP, or --exe PROGRAM [options] -- ARGS (see kiln build --help)"
NATIVE_FLAGS = "-p, --file and --user describe a native program (--exe, --deb); an app declares them in kiln.toml"
DOCKER_RUN_FLAGS = "--entrypoint, -e, --workdir, -u and --password-stdin go with a container image (docker://, oci:...)"


@dataclass(frozen=True)
class NativeSource:
    config: NativeConfig  # exe or deb, and only what was given: a Debian package's unit says the rest


@dataclass(frozen=True)
class ImageSource:
    reference: str  # docker://..., oci:DIR[:TAG], docker-archive:FILE, oci-archive:FILE
    overrides: Overrides = field(default_factory=Overrides)


@dataclass(frozen=True)
class DockerfileSource:
    context: Path
    dockerfile: Path
    target: str | None = None
    build_args: dict[str, str] = field(default_factory=dict)
    overrides: Overrides = field(default_factory=Overrides)


Source = AppSource | NativeSource | ImageSource | DockerfileSource


@dataclass(frozen=True)
class BuildResult:
    ref: Ref
    digest: str
    manifest: Manifest
    app: App | None = None  # the app built (None: a container image's or a Dockerfile's)
    check: audit.CheckReport | None = None  # options.check: the report, for the caller to show and judge
    audit: audit.CheckReport | None = None  # the default audit's report, when it ran


def build(
    source: Source, options: BuildOptions | None = None, store: Store | None = None, progress: Progress = QUIET
) -> BuildResult:
    """Build `source` into an image in `store` (the user's store by default)."""
    options = options or BuildOptions()
    store = store or Store()
    if isinstance(source, AppSource) and (why := needs_builder(source.path)):
        progress.step(f"building {source.path} by its Dockerfile: {why}")
        source = DockerfileSource(source.path, source.path / "Dockerfile", overrides=source.overrides or Overrides())
    elif isinstance(source, AppSource) and source.overrides is not None:
        o = source.overrides
        raise UsageError(
            DOCKER_RUN_FLAGS
            if o.entrypoint or o.env or o.username or o.password or o.workdir
            else ONE_APP
            if o.args
            else NATIVE_FLAGS
        )
    if isinstance(source, ImageSource | DockerfileSource) and options.check:
        raise UsageError("--check proves a Python app's imports: build the app from its directory")
    if isinstance(source, ImageSource):
        built = build_image(source.reference, store, options, progress, source.overrides)
        return BuildResult(built.ref, built.digest, built.manifest)
    if isinstance(source, DockerfileSource):
        built = build_dockerfile(source.context, source.dockerfile, store, options, progress, source.overrides,
                                 source.target, source.build_args)  # fmt: skip
        return BuildResult(built.ref, built.digest, built.manifest)
    if isinstance(source, NativeSource):
        app = App(root=Path.cwd(), config=source.config, config_file=None)
    else:
        app = load_app(source.path)
    return build_app(app, store, options, progress)


def build_app(app: App, store: Store, options: BuildOptions, progress: Progress = QUIET) -> BuildResult:
    """A Python app or a native program, then the audit where it applies."""
    if options.check and app.native:
        raise UsageError("--check proves a Python app's imports; for a native program use kiln trace")
    trims = isinstance(app.config, AppConfig) and app.config.trim == "modules"
    if trims and options.check is False:
        raise UsageError('trim = "modules" keeps only what the imports reach, so the build runs the app to prove it: '
                         "drop --no-check, or drop the trim line")  # fmt: skip
    audits = options.check is None and not app.native and (bool(app.config.ports) or trims)
    previous = _tagged(store, options.tag or app.name)
    built = (build_native if app.native else build_python)(app, store, options, progress)
    report = run_check(app, built, store, progress) if options.check else None
    audited = None
    if audits and (busy := busy_ports(app.config.ports)):
        # the unix target runs on the host's network: the app's own ports must be free there
        progress.step(f"audit: port {', '.join(map(str, busy))} is in use on this host: the app was not run, "
                      "its imports were not checked")  # fmt: skip
    elif audits:
        audited = run_check(app, built, store, progress, audit.AUDIT_READY)
        verdict(audited, store, built, previous, progress)
    return BuildResult(built.ref, built.digest, built.manifest, app, report, audited)


def run_check(
    app: App, built: Built, store: Store, progress: Progress, ready: float | None = None
) -> audit.CheckReport:
    """Run the image once on the unix target, imports profiled, and GET the app's `check` paths."""
    from kiln.analyze.python import Resolver

    analysis = built.analysis
    assert analysis is not None and isinstance(app.config, AppConfig)
    resolver = Resolver(app, analysis.interp, tuple(analysis.place.sites))
    progress.step(f"checking: running {built.ref} on the unix target, imports profiled")
    image = store.image(str(built.ref))
    return audit.run(
        store, image, app.config.check, lambda n: resolver.find(n) is not None, ready or audit.READY_TIMEOUT
    )


def verdict(report: audit.CheckReport, store: Store, built: Built, previous: str | None, progress: Progress) -> None:
    """The default audit's: a module the app imported that the image lacks fails the build in one line, and
    the image is undone (the tag back where it was); an app that never answered is only not audited."""
    if report.missing:
        store.discard(built.ref, built.digest, previous)
        fix = (
            f"add {audit.toml_list('include', report.include)} to kiln.toml"
            if report.include
            else ("it is not installed where the app was built from: add its distribution to the requirements")
        )
        raise AnalysisError(
            f"the audit run imported {', '.join(report.missing)}, which the image lacks: {fix} "
            "(kiln build --no-check skips the run)"
        )  # fmt: skip
    if report.not_ready:
        ended = f"it exited with status {report.exit_status}" if report.exit_status is not None else "it kept starting"
        raised = [ln.strip() for ln in report.output.splitlines() if re.match(r"^\s*[\w.]*(Error|Exception)\b", ln)]
        if raised and report.exit_status is not None:
            ended += f": {raised[-1][:160]}"
        progress.step(f"audit: the app did not answer on port {', '.join(map(str, report.not_ready))} within "
                      f"{audit.AUDIT_READY:.0f} s ({ended}): its imports were not checked")  # fmt: skip
    else:
        asked = ", ".join(f"GET {urlsplit(url).path or '/'} -> {status}" for url, status in report.requests)
        progress.step(f"audit: {asked}; {len(report.imported)} modules imported, none missing")


def busy_ports(ports: tuple[int, ...]) -> list[int]:
    """The ports another process on this host listens on (the audit's app would find them taken)."""
    busy = []
    for port in ports:
        try:
            check_free([PortMap(host_ip="0.0.0.0", host=port, guest=port)])
        except TargetError:
            busy.append(port)
    return busy


def _tagged(store: Store, name: str) -> str | None:
    """The image the tag names before this build, if any."""
    try:
        return store.resolve(name)[0]
    except KilnError:
        return None
