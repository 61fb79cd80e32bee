"""The sandbox image: a debootstrapped Debian base, a host-made wheelhouse, and `docker/runner/Dockerfile`.

The image is tagged `grader-runner:<hash of its inputs>` (Dockerfile, student server files, pins, base image),
so a change to the student server gives a new tag and `ensure_image()` rebuilds. Nothing is pulled from a
registry: the base is made by debootstrap, and the Python packages come from a wheelhouse downloaded on the
host, because the build itself has no package index. Environment overrides:

* `GRADER_RUNNER_IMAGE`: use this image as it is; never build.
* `GRADER_BASE_IMAGE`: build on this base (any Debian bookworm image) instead of `grader-base:bookworm`.
* `GRADER_CACHE`: where the wheelhouse and build contexts live (default `~/.cache/grader`).
* `GRADER_DEBIAN_MIRROR`: the mirror debootstrap and apt use (default deb.debian.org).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
import requests

from worker.engine.errors import InfrastructureError
from worker.engine.runners.base import SANDBOX_FILES, SANDBOX_SOURCE

# The same pins as pyproject.toml (a test checks), so the sandbox runs what the judge was tested with.
PINS = ("torch==2.13.0", "numpy==2.4.6", "pytest==9.2.0")
DEFAULT_BASE = "grader-base:bookworm"
REPOSITORY = "grader-runner"
# The uid:gid the Dockerfile creates for student code; the runner passes it explicitly as well.
SANDBOX_UID = 10001
DOCKERFILE = Path(__file__).resolve().parents[2] / "docker" / "runner" / "Dockerfile"
SUITE = "bookworm"
# The glibc of Debian bookworm is 2.36: wheels tagged for any manylinux up to that run in the image.
_GLIBC_MINORS = range(17, 37)
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def log(message: str) -> None:
    """Progress for whoever runs a build (stderr, so stdout stays clean for machine-read output)."""
    print(f"grader image: {message}", file=sys.stderr, flush=True)


def _probe_unix_socket(base_url: str | None, timeout: float) -> None:
    """Connect to the engine's Unix socket ourselves first: docker-py leaks the socket of a failed connect,
    which surfaces later as a ResourceWarning (an error under our pytest settings) far from the cause."""
    url = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if not url.startswith("unix://"):
        return
    path = url.removeprefix("unix://")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(timeout)
        try:
            probe.connect(path)
        except OSError as exc:
            raise InfrastructureError(f"no Docker engine answered at {path} ({exc})") from exc


def open_client(base_url: str | None = None, timeout: float = 120.0) -> docker.DockerClient:
    """A Docker client (DOCKER_HOST etc. unless `base_url`); InfrastructureError when no engine answers."""
    _probe_unix_socket(base_url, min(timeout, 5.0))
    try:
        if base_url:
            return docker.DockerClient(base_url=base_url, timeout=int(timeout))
        return docker.from_env(timeout=int(timeout))
    except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
        raise InfrastructureError(f"no Docker engine answered ({exc})") from exc


def cache_dir() -> Path:
    """Folder for the wheelhouse and build scratch space (`GRADER_CACHE`, else ~/.cache/grader)."""
    path = Path(os.environ.get("GRADER_CACHE") or Path.home() / ".cache" / "grader")
    path.mkdir(parents=True, exist_ok=True)
    return path


def base_image() -> str:
    """The image the runner image is built on."""
    return os.environ.get("GRADER_BASE_IMAGE") or DEFAULT_BASE


def inputs_hash() -> str:
    """sha256 over everything that goes into the image; a missing sandbox file hashes as missing."""
    digest = hashlib.sha256()
    digest.update(f"base={base_image()}\0pins={','.join(PINS)}\0".encode())
    digest.update(DOCKERFILE.read_bytes() + b"\0")
    for name in SANDBOX_FILES:
        path = SANDBOX_SOURCE / name
        digest.update(name.encode() + b"\0")
        digest.update((path.read_bytes() if path.is_file() else b"<missing>") + b"\0")
    return digest.hexdigest()


def image_name() -> str:
    """The runner image for the current inputs (or `GRADER_RUNNER_IMAGE` as it is)."""
    override = os.environ.get("GRADER_RUNNER_IMAGE")
    if override:
        return override
    return f"{REPOSITORY}:{inputs_hash()[:12]}"


def has_image(client: docker.DockerClient, name: str) -> bool:
    """Whether the engine holds image `name`."""
    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


# -- base image ----------------------------------------------------------------------------------------------
def build_base_image(force: bool = False, client: docker.DockerClient | None = None) -> str:
    """Make `grader-base:bookworm` with debootstrap (minbase) and import it; skip when it exists."""
    own = client is None
    client = client or open_client()
    try:
        if not force and has_image(client, DEFAULT_BASE):
            log(f"{DEFAULT_BASE} is present")
            return DEFAULT_BASE
        if shutil.which("debootstrap") is None:
            raise InfrastructureError(
                "debootstrap is not installed; it makes the base image (apt-get install debootstrap), "
                "or set GRADER_BASE_IMAGE to an existing Debian bookworm image")
        if os.geteuid() != 0:
            raise InfrastructureError("debootstrap needs root to make the base image; run the build as root "
                                      "or set GRADER_BASE_IMAGE to an existing Debian bookworm image")
        mirror = os.environ.get("GRADER_DEBIAN_MIRROR", "http://deb.debian.org/debian")
        scratch = Path(tempfile.mkdtemp(prefix="bootstrap-", dir=cache_dir()))
        try:
            rootfs = scratch / "rootfs"
            log(f"debootstrap --variant=minbase {SUITE} (a few minutes)")
            started = time.monotonic()
            done = subprocess.run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror],
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise InfrastructureError(f"debootstrap failed:\n{(done.stdout + done.stderr)[-3000:]}")
            log(f"debootstrap took {time.monotonic() - started:.0f} s")
            import_rootfs(client, rootfs, DEFAULT_BASE, mirror)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return DEFAULT_BASE
    finally:
        if own:
            client.close()


def import_rootfs(client: docker.DockerClient, rootfs: Path, name: str,
                  mirror: str = "http://deb.debian.org/debian") -> None:
    """Trim a debootstrapped tree, give it update/security sources, and `docker import` it as `name`."""
    # Security updates matter for an image that runs hostile code; minbase only knows the release itself.
    security = mirror.rstrip("/").removesuffix("/debian") + "/debian-security"
    (rootfs / "etc" / "apt" / "sources.list").write_text(
        f"deb {mirror} {SUITE} main\ndeb {mirror} {SUITE}-updates main\n"
        f"deb {security} {SUITE}-security main\n")
    for leftovers in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for item in (rootfs / leftovers).glob("*"):
            if item.is_file():
                item.unlink()
    # A file, not a pipe: the SDK sends a stream with a broken chunked encoding, a file with its length.
    with tempfile.NamedTemporaryFile(dir=cache_dir(), suffix=".tar") as tarball:
        subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=tarball, check=True)
        tarball.flush()
        repository, _, tag = name.partition(":")
        log(f"importing {rootfs} as {name}")
        client.api.import_image_from_file(
            tarball.name, repository=repository, tag=tag or "latest",
            changes=[f"ENV PATH={_PATH}", "ENV LANG=C.UTF-8", 'CMD ["/bin/bash"]'])
    if not has_image(client, name):
        raise InfrastructureError(f"docker import did not produce {name}")


# -- wheelhouse ----------------------------------------------------------------------------------------------
def ensure_wheelhouse(directory: Path | None = None) -> Path:
    """Download wheels for PINS (and their dependencies) for the image's Python; skip when already there."""
    directory = Path(directory or cache_dir() / "wheelhouse")
    machine = platform.machine()
    platforms = [f"manylinux_2_{minor}_{machine}" for minor in _GLIBC_MINORS] + [f"manylinux2014_{machine}"]
    stamp_text = "\n".join([*PINS, *platforms]) + "\n"
    stamp = directory / ".pins"
    if stamp.is_file() and stamp.read_text() == stamp_text and any(directory.glob("torch-*.whl")):
        log(f"wheelhouse {directory} is up to date")
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    log(f"downloading wheels for {' '.join(PINS)} into {directory}")
    # Explicit target tags: the wheels are for bookworm's CPython 3.11, whatever Python runs this build.
    command = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--dest", str(directory),
               "--implementation", "cp", "--python-version", "3.11", "--abi", "cp311", "--abi", "none",
               "--abi", "abi3", *[arg for p in platforms for arg in ("--platform", p)], *PINS]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise InfrastructureError(f"pip download failed:\n{(done.stdout + done.stderr)[-3000:]}")
    stamp.write_text(stamp_text)
    return directory


# -- runner image --------------------------------------------------------------------------------------------
def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # the wheelhouse and the context share a file system: no 200 MB copy
    except OSError:
        shutil.copy2(source, target)


def _make_context(wheels: Path) -> Path:
    """A build context folder: Dockerfile, wheels/ (+ requirements.txt), sandbox/."""
    missing = [name for name in SANDBOX_FILES if not (SANDBOX_SOURCE / name).is_file()]
    if missing:
        raise InfrastructureError(f"cannot build the runner image: {', '.join(missing)} missing in "
                                  f"{SANDBOX_SOURCE}")
    context = Path(tempfile.mkdtemp(prefix="context-", dir=cache_dir()))
    shutil.copy2(DOCKERFILE, context / "Dockerfile")
    (context / "wheels").mkdir()
    for wheel in wheels.glob("*.whl"):
        _link_or_copy(wheel, context / "wheels" / wheel.name)
    (context / "wheels" / "requirements.txt").write_text("\n".join(PINS) + "\n")
    (context / "sandbox").mkdir()
    for name in SANDBOX_FILES:
        shutil.copyfile(SANDBOX_SOURCE / name, context / "sandbox" / name)
    return context


def build_runner_image(force: bool = False, client: docker.DockerClient | None = None) -> str:
    """Build `grader-runner:<inputs hash>` (also tagged latest) unless it exists; return its name."""
    own = client is None
    client = client or open_client(timeout=1800)
    name = f"{REPOSITORY}:{inputs_hash()[:12]}"
    try:
        if not force and has_image(client, name):
            log(f"{name} is present")
            return name
        base = base_image()
        if base == DEFAULT_BASE:
            build_base_image(client=client)
        wheels = ensure_wheelhouse()
        context = _make_context(wheels)
        started = time.monotonic()
        log(f"building {name} on {base}")
        try:
            _docker_build(client, context, name, base, nocache=force)
        finally:
            shutil.rmtree(context, ignore_errors=True)
        client.images.get(name).tag(REPOSITORY, "latest")
        _remove_stale_tags(client, keep=name)
        size = client.images.get(name).attrs.get("Size", 0) / 1e6
        log(f"built {name} in {time.monotonic() - started:.0f} s ({size:.0f} MB)")
        return name
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise InfrastructureError(f"building {name} failed: {exc}") from exc
    finally:
        if own:
            client.close()


def _remove_stale_tags(client: docker.DockerClient, keep: str) -> None:
    """Untag runner images of older inputs (each is ~1 GB); one still used by a container stays."""
    for image in client.images.list(name=REPOSITORY):
        for tag in image.tags:
            if tag in (keep, f"{REPOSITORY}:latest"):
                continue
            try:
                client.images.remove(tag)
                log(f"removed the outdated {tag}")
            except docker.errors.APIError as exc:
                log(f"kept {tag}: {exc.explanation or exc}")


def _docker_build(client: docker.DockerClient, context: Path, name: str, base: str, nocache: bool) -> None:
    """Run the build, streaming the builder's output to stderr; raise on a failed step."""
    # nocache on a forced build: apt runs again and picks up the latest security updates.
    labels = {"grader.inputs": inputs_hash(), "grader.pins": " ".join(PINS), "grader.base": base}
    stream = client.api.build(path=str(context), tag=name, rm=True, forcerm=True, pull=False, decode=True,
                              nocache=nocache, buildargs={"BASE_IMAGE": base}, labels=labels)
    for event in stream:
        if "error" in event:
            raise InfrastructureError(f"building {name} failed: {event['error'].strip()}")
        text = event.get("stream", "").rstrip()
        if text:
            print(text, file=sys.stderr, flush=True)


def ensure_image(client: docker.DockerClient | None = None) -> str:
    """The runner image's name, building it first when missing (never with `GRADER_RUNNER_IMAGE` set)."""
    override = os.environ.get("GRADER_RUNNER_IMAGE")
    if override:
        return override
    return build_runner_image(client=client)


def main_build(force: bool = False) -> str:
    """`grader image build`: make sure the runner image exists (rebuild with force); prints and returns its
    name, raises InfrastructureError when it cannot be built."""
    override = os.environ.get("GRADER_RUNNER_IMAGE")
    if override:
        log(f"GRADER_RUNNER_IMAGE={override}: nothing to build")
        return override
    name = build_runner_image(force=force)
    print(name)
    return name


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m worker.engine.image")
    parser.add_argument("command", choices=["build"])
    parser.add_argument("--force", action="store_true", help="rebuild even when the image exists")
    arguments = parser.parse_args()
    try:
        main_build(force=arguments.force)
    except InfrastructureError as exc:
        log(f"error: {exc}")
        sys.exit(1)
