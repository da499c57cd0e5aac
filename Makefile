# kiln — two commands on a fresh Debian 12 machine:
#   make demo   install everything, build the kernel once, build and boot examples/hello-http, answer a request
#   make test   install everything, then run the test suite (what .ci/run does)

VENV      ?= .venv
PYTHON    ?= python3
KILN      := $(VENV)/bin/kiln
APT_PACKAGES := qemu-system-x86 linux-source-6.1 linux-config-6.1 build-essential flex bison bc libelf-dev \
                libssl-dev erofs-utils cryptsetup-bin xz-utils util-linux debootstrap docker-registry memcached redis-tools postgresql-client mariadb-client curl strace python3.11 wrk bubblewrap e2fsprogs \
                python3-venv binutils python3.11-dev gdb libvirt-daemon-system libvirt-dev pkg-config skopeo \
                buildah umoci podman containerd runc docker.io \
                passt ovmf seabios systemd-boot-efi grub-efi-amd64-bin grub-pc-bin mtools dosfstools qemu-utils \
                gdisk fdisk syslinux syslinux-common
# Each app gets a kernel specialized to it: build (or reuse) the ones the demo and the tests boot.
# In this order, each after the one it differs least from (they share one object tree: after
# hello-http's, sealed's takes ~20 s and exit3's ~1 min; eventfd/timerfd/signalfd change every task).
KERNEL_APPS := examples/hello-http tests/fixtures/apps/sealed tests/fixtures/apps/exit3 \
               examples/memcached examples/nginx-static examples/redis examples/mosquitto

.PHONY: setup apt venv kernel kernels demo test lint bench faults clean

setup: apt venv

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@# npm for Node.js apps' dependencies: Debian's, unless the machine has one (nodesource's node brings its own)
	@command -v npm >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends npm; }

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	# compat: a plain path in a .pth file; the default editable finder costs every kiln command ~10 ms
	$(VENV)/bin/pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $@

kernel: setup
	$(KILN) kernel build --for examples/hello-http

kernels: setup
	for app in $(KERNEL_APPS); do $(KILN) kernel build --for $$app || exit 1; done
	$(KILN) kernel build --for examples/hello-http --disk generic  # its firmware-booted disk, and sealed's (tests/e2e/test_disk.py)

demo: kernel
	$(VENV)/bin/python scripts/demo.py

test: kernels
	$(VENV)/bin/ruff check kiln kiln_testing tests bench scripts
	$(VENV)/bin/pytest -q

# Every benchmark. Under TCG on 2 cores: ~2 hours, most of it the density ramp (here 100 unikernels
# answered, 125 did not within its deadline; it stops at a step that fails or would not fit in memory).
# QUICK=1: minutes.
bench: kernels
	$(VENV)/bin/python -m bench $(if $(QUICK),--quick)

# The full fault sweep (tests/faults samples it): SIGKILL at every step of every long operation, a full disk
# at nine points of each, bursts of 50-200 first connections, a soak of 1,000 summons. Writes docs/reliability.md.
faults: kernels
	$(VENV)/bin/python bench/faults.py $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) build *.egg-info
