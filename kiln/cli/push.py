"""`kiln push` / `kiln pull`: images through an OCI registry."""

from __future__ import annotations

import sys

import click

from kiln.cli import ui

CREDENTIALS = [
    click.option("-u", "--username", help="Registry user (else from ~/.docker/config.json)."),
    click.option("--password-stdin", is_flag=True, help="Read the password from standard input."),
]


def _credentials(username: str | None, password_stdin: bool) -> tuple[str | None, str | None]:
    from kiln.errors import UsageError

    if password_stdin and not username:
        raise UsageError("--password-stdin needs --username")
    return username, sys.stdin.readline().rstrip("\n") if password_stdin else None


def credential_options(f):
    for option in reversed(CREDENTIALS):
        f = option(f)
    return f


@click.command(
    epilog="\b\nExamples:\n  kiln tag hello-http localhost:5000/demo/hello:1.0\n"
    "  kiln push localhost:5000/demo/hello:1.0\n"
    '  echo "$PW" | kiln push -u me --password-stdin localhost:5000/demo/hello:1.0\n'
    "  kiln push --as-container localhost:5000/demo/hello:1.0   # then: podman --runtime kiln-oci run ..."
)
@click.argument("image")
@credential_options
@click.option(
    "--as-container",
    is_flag=True,
    help="Push it as an ordinary OCI image (one layer: /kiln/kernel.xz, rootfs.erofs, manifest.json), for "
    "podman, docker, containerd and Kubernetes with the kiln-oci runtime.",
)
def push(image: str, username: str | None, password_stdin: bool, as_container: bool) -> None:
    """Push IMAGE (named registry/repository:tag) to its registry as an OCI artifact (or a container image)."""
    from kiln.registry import push as push_image
    from kiln.registry import push_container
    from kiln.store import Store

    user, password = _credentials(username, password_stdin)
    store = Store()
    store.image(image)  # a missing image is an error before anything is said to the registry
    ui.say(f"pushing {image}{' as a container image' if as_container else ''}", err=True)
    digest = (push_container if as_container else push_image)(store, image, user, password)
    ui.say(f"{image} pushed ({digest})")


@click.command(epilog="\b\nExample:\n  kiln pull localhost:5000/demo/hello:1.0")
@click.argument("image")
@credential_options
def pull(image: str, username: str | None, password_stdin: bool) -> None:
    """Pull IMAGE from its registry into the local store, checking every digest."""
    from kiln.registry import pull as pull_image
    from kiln.store import Store

    user, password = _credentials(username, password_stdin)

    def show(what: str, done: int, total: int) -> None:
        if done:
            ui.say(f"  {what}: {done} of {total} bytes", err=True)

    digest = pull_image(Store(), image, user, password, progress=show)
    ui.say(f"{image} pulled ({digest})")
