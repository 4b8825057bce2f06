#!/usr/bin/env bash
# Install (or upgrade, or remove) firewarden as a systemd service on a Debian edge box.
# Run `systemd/install.sh --help` for the options; `make install` runs it with sudo.
set -euo pipefail

NAME=firewarden
CREDENTIALS=(mqtt-password influx-password influx-token)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
    cat <<EOF
Usage: $0 [--root DIR] [--python PY] [--source DIR] [--now]
       $0 --uninstall [--purge] [--root DIR]

Installs firewarden as a systemd service:
  /opt/firewarden/venv                   a virtual environment with this checkout pip-installed
  /etc/firewarden/firewarden.toml        the config, from systemd/firewarden.example.toml
                                         (only when absent: a re-run keeps your edits)
  /etc/firewarden/credentials/           0700, with empty 0600 placeholders for
                                         ${CREDENTIALS[*]}
  /etc/modules-load.d/firewarden.conf    loads usbserial and cdc_acm at boot
  /etc/systemd/system/firewarden.service then: systemctl daemon-reload; systemctl enable

The config is checked with the new venv (firewarden check) before the unit is installed or
enabled: a bad config prints its errors and exits 1 with nothing enabled. Re-running upgrades
the venv in place, keeps the config and credentials, and restarts the service if it runs.

Options:
  --root DIR     install everything under DIR instead of / and do not call systemctl,
                 modprobe or chown (print what would be run): a staged install for tests
  --python PY    the Python (>= 3.11, with venv: apt install python3-venv) that creates the
                 venv (default: python3)
  --source DIR   the firewarden checkout to install (default: $(dirname "$HERE"))
  --now          start the service now (restart it if it runs); without it, a first install
                 is enabled for the next boot only, and an upgrade restarts a running service
  --uninstall    stop and disable the service, remove the unit and /opt/firewarden; keep
                 /etc/firewarden and the state (/var/lib/firewarden, /var/lib/private/firewarden)
  --purge        with --uninstall: remove the config, credentials and state too
  -h, --help     this text
EOF
}

say() { printf '%s: %s\n' "$NAME-install" "$*"; }
warn() { printf '%s: warning: %s\n' "$NAME-install" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$NAME-install" "$*" >&2
    exit 1
}

root=""
staged=0
python=python3
source_dir=$(dirname "$HERE")
action=install
purge=0
start_now=0
while (($#)); do
    case $1 in
        --root) (($# >= 2)) || die "--root needs a directory"; root=$2; staged=1; shift ;;
        --root=*) root=${1#*=}; staged=1 ;;
        --python) (($# >= 2)) || die "--python needs an interpreter"; python=$2; shift ;;
        --python=*) python=${1#*=} ;;
        --source) (($# >= 2)) || die "--source needs a directory"; source_dir=$2; shift ;;
        --source=*) source_dir=${1#*=} ;;
        --now) start_now=1 ;;
        --uninstall) action=uninstall ;;
        --purge) purge=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done
if ((purge)) && [[ $action != uninstall ]]; then
    die "--purge goes with --uninstall"
fi
if ((staged)); then
    [[ -n $root ]] || die "--root needs a directory"
    mkdir -p "$root"
    root=$(cd "$root" && pwd)
    [[ $root == / ]] && root=""  # --root / is the real system, still without systemctl
elif ((EUID != 0)); then
    die "run as root (sudo $0 ...), or stage into a directory with --root DIR"
fi

prefix=$root/opt/$NAME
venv=$prefix/venv
etc=$root/etc/$NAME
config=$etc/$NAME.toml
credentials=$etc/credentials
unit_dir=$root/etc/systemd/system
unit=$unit_dir/$NAME.service
modules=$root/etc/modules-load.d/$NAME.conf

# Commands that change the running system: printed instead with --root.
system() {
    if ((staged)); then
        say "would run: $*"
    else
        "$@"
    fi
}

uninstall() {
    if ((staged)); then
        say "would run: systemctl disable --now $NAME.service"
    elif [[ -e $unit ]]; then
        systemctl disable --now "$NAME.service" || warn "could not stop or disable $NAME.service"
    fi
    rm -f "$unit" "$modules"
    system systemctl daemon-reload
    if ! ((staged)); then
        systemctl reset-failed "$NAME.service" 2>/dev/null || true
    fi
    rm -rf "${prefix:?}"
    say "removed the unit, $modules and $prefix"
    if ((purge)); then
        # With DynamicUser= the state lives in /var/lib/private/firewarden and
        # /var/lib/firewarden is a symlink to it; rm -rf removes the link, not what it names.
        rm -rf "${etc:?}" "$root/var/lib/$NAME" "$root/var/lib/private/$NAME"
        say "purged $etc (config, credentials) and the state in $root/var/lib/$NAME," \
            "$root/var/lib/private/$NAME"
        say "(a state_dir set elsewhere in the config is not touched)"
    else
        say "kept $etc (config, credentials) and the state in $root/var/lib/private/$NAME;" \
            "--uninstall --purge removes them"
    fi
}

check_python() {
    command -v "$python" >/dev/null || die "$python not found (apt install python3 python3-venv)"
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "firewarden needs Python >= 3.11; $python is $("$python" --version 2>&1)"
    "$python" -c 'import ensurepip, venv' 2>/dev/null \
        || die "$python cannot create virtual environments: apt install python3-venv"
}

install_venv() {
    local wanted have build
    wanted=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    have=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' \
        2>/dev/null || true)
    if [[ $have != "$wanted" ]]; then
        # Absent, broken, or made by another Python (a distribution upgrade): start afresh.
        [[ -e $venv ]] && say "recreating $venv (Python ${have:-unusable} -> $wanted)"
        rm -rf "${venv:?}"
        mkdir -p "$prefix"
        "$python" -m venv "$venv"
        say "created $venv (Python $wanted)"
    fi
    # Build from a clean copy: pip builds in the source tree, which would leave root-owned
    # build/ and *.egg-info in the checkout, and setuptools' build/lib can hold stale modules.
    build=$(mktemp -d)
    # shellcheck disable=SC2064  # expand now: $build is local
    trap "rm -rf '$build'" EXIT
    tar -C "$source_dir" -cf - --exclude=./.git --exclude=./.venv --exclude=./var \
        --exclude=./build --exclude='*.egg-info' --exclude=__pycache__ --exclude=./.mypy_cache \
        --exclude=./.ruff_cache --exclude=./.pytest_cache --exclude=./.hypothesis . \
        | tar -C "$build" -xf -
    say "installing $source_dir into $venv (pip) ..."
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --upgrade "$build"
    rm -rf "$build"
    trap - EXIT
    install -m 0644 "$source_dir/README.md" "$prefix/README.md"  # the unit's Documentation=
    say "firewarden $("$venv/bin/python" -c \
        'import importlib.metadata as m; print(m.version("firewarden"))') in $venv"
}

install_config() {
    mkdir -p "$etc"
    chmod 0755 "$etc"
    if [[ -e $config ]]; then
        say "keeping $config"
    else
        install -m 0644 "$HERE/$NAME.example.toml" "$config"
        say "created $config from systemd/$NAME.example.toml: edit it for your site"
    fi
    # The service runs as a transient user (DynamicUser=) that must be able to read it; secrets
    # belong in $credentials, not in the config.
    if [[ $(stat -c %A "$config") != ???????r?? ]]; then
        warn "$config is not world-readable: the service cannot read it (chmod 0644; keep" \
            "secrets in $credentials)"
    fi
    mkdir -p "$credentials"
    chmod 0700 "$credentials"
    local name
    for name in "${CREDENTIALS[@]}"; do
        if [[ -e $credentials/$name ]]; then
            chmod go-rwx "$credentials/$name"
        else
            # LoadCredential= fails the start when the source file is missing.
            install -m 0600 /dev/null "$credentials/$name"
        fi
    done
    if ! ((staged)); then
        chown -R root:root "$credentials"
    fi
    say "credentials in $credentials: ${CREDENTIALS[*]} (empty ones are unused)"
    mkdir -p "$(dirname "$modules")"
    install -m 0644 "$HERE/modules-load.conf" "$modules"
    system modprobe -a usbserial cdc_acm || warn "modprobe usbserial cdc_acm failed"
}

check_config() {
    local output
    # The check sees the credentials where the service will: the config names them
    # "${CREDENTIALS_DIRECTORY}/<name>", and systemd copies them from $credentials.
    if output=$(CREDENTIALS_DIRECTORY=$credentials "$venv/bin/$NAME" check -c "$config" 2>&1)
    then
        say "config ok: $venv/bin/$NAME check -c $config"
        return 0
    fi
    printf '%s\n' "$output" >&2
    die "$config has errors (above): fix it and run the installer again; the service was" \
        "not installed or enabled (nothing was restarted)"
}

install_unit() {
    mkdir -p "$unit_dir"
    install -m 0644 "$HERE/$NAME.service" "$unit"
    say "installed $unit"
    system systemctl daemon-reload
    system systemctl enable "$NAME.service"
    if ((start_now)); then
        system systemctl restart "$NAME.service"
    else
        # An upgrade: a running daemon picks up the new code (no-op when it is stopped).
        system systemctl try-restart "$NAME.service"
    fi
}

next_steps() {
    local where="" names
    names=$(IFS=,; echo "${CREDENTIALS[*]}")
    ((staged)) && where=" (staged under $root)"
    cat <<EOF

firewarden is installed$where. Next steps:
  1. edit the config:            sudoedit /etc/$NAME/$NAME.toml
     secrets (root, 0600):       /etc/$NAME/credentials/{$names}
                                 referred to as "\${CREDENTIALS_DIRECTORY}/mqtt-password" etc.
  2. check it:                   sudo CREDENTIALS_DIRECTORY=/etc/$NAME/credentials \\
                                   /opt/$NAME/venv/bin/$NAME check -c /etc/$NAME/$NAME.toml
  3. start it (enabled at boot): sudo systemctl start $NAME     (after edits: reload)
  4. watch it:                   systemctl status $NAME; journalctl -u $NAME -f
EOF
}

if [[ $action == uninstall ]]; then
    uninstall
    exit 0
fi
if ! grep -qs '^name = "firewarden"' "$source_dir/pyproject.toml"; then
    die "$source_dir is not a firewarden checkout (--source DIR)"
fi
source_dir=$(cd "$source_dir" && pwd)
check_python
install_venv
install_config
check_config
install_unit
next_steps
