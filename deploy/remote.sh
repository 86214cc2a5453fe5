#!/bin/sh
# The Pi's half of `make deploy`, shipped in each release (PI_DIR/releases/ID/.deploy/) and run
# from that release's folder:
#   sh .deploy/remote.sh setup ID | status | logs [--journal] | rollback | undeploy [--purge]
#
# PI_DIR (FER_EDGE_ROOT, set by deploy.py) holds releases/ID/, `current` and `previous`
# (symlinks to releases, each replaced by rename(2): a reader sees the old or the new one,
# never neither), venvs/KEY/ (one per requirements + Python, shared by releases) and logs/.
# setup makes the new release complete (venv, pip, units verified) before `current` moves to
# it; anything failing before that leaves the running release untouched.
#
# Output protocol with deploy/deploy.py: "==> STEP" starts a step; "!! STEP: MESSAGE" is a
# failure (exit 1); "warning: ..." never fails. Plain POSIX sh, because /bin/sh is dash on
# Raspberry Pi OS.
set -u
exec 2>&1  # one ordered stream, so the local side can tell which step printed what

UNIT=fer-edge.service
TIMER=fer-edge-rotate.timer
UNITS="fer-edge.service fer-edge-rotate.service fer-edge-rotate.timer"
EVENTS=logs/events.jsonl
REQS=requirements-edge.txt
STAMP=.venv/.requirements-edge.sha256  # inside the venv: a new venv means a new install
UNIT_DIR=${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user
# Run from PI_DIR/current (the Pi's Makefile) nothing sets it: the release's grandparent.
ROOT=${FER_EDGE_ROOT:-$(cd -P ../.. && pwd)}
KEEP_RELEASES=2  # current and previous; older releases and their unused venvs are deleted

step() { STEP=$1; echo "==> $1"; }
fail() { echo "!! $STEP: $*"; exit 1; }

# systemctl --user needs the user's runtime dir; an SSH login through PAM sets it, su does not.
if [ -z "${XDG_RUNTIME_DIR:-}" ] && [ -d "/run/user/$(id -u)" ]; then
    XDG_RUNTIME_DIR=/run/user/$(id -u)
    export XDG_RUNTIME_DIR
fi

# True when a systemd user manager can take our units; otherwise $why says what is missing.
# With --linger (deploy only) it first makes the manager outlive the SSH session.
have_user_systemd() {
    if [ ! -d /run/systemd/system ]; then
        why="systemd is not running here (PID 1 is $(cat /proc/1/comm 2>/dev/null || echo unknown))"
        return 1
    fi
    if ! command -v systemctl >/dev/null 2>&1; then
        why="systemctl is not installed"
        return 1
    fi
    if [ "${1:-}" = --linger ]; then ensure_linger; fi
    if ! systemctl --user show-environment >/dev/null 2>&1; then
        why="no systemd user manager for $(id -un) (XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-unset})"
        return 1
    fi
}

# Linger starts the user's manager at boot, so the service runs without anyone logged in.
# Enabling it for yourself needs no password on Raspberry Pi OS; sudo -n is the fallback.
ensure_linger() {
    user=$(id -un)
    [ -e "/var/lib/systemd/linger/$user" ] && return 0
    if loginctl enable-linger "$user" 2>/dev/null || sudo -n loginctl enable-linger "$user" 2>/dev/null; then
        echo "enabled linger for $user: the service starts at boot without a login"
    else
        echo "warning: could not enable linger; the service stops when $user logs out." \
             "Run once on the Pi: sudo loginctl enable-linger $user"
    fi
}

setup() {
    release=$1
    step venv
    command -v python3 >/dev/null 2>&1 || fail "python3 not found; install Raspberry Pi OS (64-bit)"
    # One venv per requirements and Python: a release with the same ones shares it, a new
    # requirement gets a new venv beside the running one.
    key=$( (cat "$REQS"; python3 -V 2>&1) | sha256sum | cut -c1-12)
    venv=$ROOT/venvs/$key
    if [ -x "$venv/bin/python" ]; then
        echo "kept .venv ($("$venv/bin/python" -V 2>&1), venvs/$key)"
    else
        mkdir -p "$ROOT/venvs" || fail "cannot create $ROOT/venvs"
        rm -rf "$venv.new"
        running=$(cd -P "$ROOT/current/.venv" 2>/dev/null && pwd)
        if [ -n "$running" ] && [ "$("$running/bin/python" -V 2>&1)" = "$(python3 -V 2>&1)" ]; then
            # A copy of the running venv, so pip only adds what changed; the original is
            # only read. (Only `python -m` is used, so the copy's script shebangs do not matter.)
            cp -a "$running" "$venv.new" && rm -f "$venv.new/.requirements-edge.sha256" \
                && mv -T "$venv.new" "$venv" || fail "cannot copy $running to $venv"
            echo "created .venv ($("$venv/bin/python" -V 2>&1), venvs/$key, from ${running##*/})"
        else
            # --system-site-packages: apt's python3-picamera2 (libcamera bindings) stay visible.
            python3 -m venv --system-site-packages "$venv" \
                || fail "python3 -m venv failed; run on the Pi: sudo apt install -y python3-venv"
            echo "created .venv ($("$venv/bin/python" -V 2>&1), venvs/$key)"
        fi
    fi
    ln -sfn "../../venvs/$key" .venv || fail "cannot link .venv"

    step pip
    want=$(sha256sum "$REQS" | cut -d' ' -f1)
    have=$(cat "$STAMP" 2>/dev/null || true)
    if [ "$want" = "$have" ]; then
        echo "requirements unchanged ($REQS sha256 $(echo "$want" | cut -c1-12)): pip install skipped"
    else
        # Shown as it goes (a Pi is slow), kept to name pip's own reason in the one-line error.
        log=$(mktemp)
        { .venv/bin/python -m pip install --disable-pip-version-check --progress-bar off \
            -r "$REQS" 2>&1; echo $? > "$log.rc"; } | tee "$log"
        rc=$(cat "$log.rc")
        reason=$(grep '^ERROR' "$log" | tail -n 1)
        rm -f "$log" "$log.rc"
        [ "$rc" = 0 ] || fail "pip install -r $REQS failed (${reason:-exit status $rc});" \
            "the running release is unchanged"
        # Stamp only after success, atomically, so an interrupted install is retried next time.
        echo "$want" > "$STAMP.tmp" && mv -f "$STAMP.tmp" "$STAMP"
        echo "installed $REQS"
    fi

    step picamera2
    if err=$(.venv/bin/python -c 'import picamera2' 2>&1); then
        echo "picamera2 importable"
    elif echo "$err" | grep -qi numpy; then
        # Bookworm's apt simplejpeg (imported by picamera2) is built for numpy 1.x, and the
        # venv needs numpy 2 (opencv 4.12+); raspberrypi/picamera2#1088. A numpy-2 build of
        # simplejpeg from PyPI in the venv shadows apt's. Once: afterwards the import works.
        echo "picamera2 breaks on the venv's numpy 2 (apt's simplejpeg is built for numpy 1);" \
             "installing simplejpeg from PyPI into .venv"
        .venv/bin/python -m pip install --disable-pip-version-check --progress-bar off \
            --only-binary :all: 'simplejpeg>=1.8.1' >/dev/null
        if err=$(.venv/bin/python -c 'import picamera2' 2>&1); then
            echo "picamera2 importable"
        else
            echo "warning: picamera2 still fails: $(echo "$err" | tail -n 1)"
        fi
    else
        echo "warning: picamera2 is not importable ($(echo "$err" | tail -n 1));" \
             "SOURCE=picamera needs it. Run on the Pi: sudo apt install -y python3-picamera2"
    fi

    step logs
    mkdir -p "$ROOT/logs" && ln -sfn ../../logs logs || fail "cannot create $ROOT/logs"
    echo "events go to $ROOT/$EVENTS (rotated by $TIMER)"

    step verify-unit
    if command -v systemd-analyze >/dev/null 2>&1; then
        # verify --user builds a private manager, which needs a runtime dir even without systemd.
        rt=${XDG_RUNTIME_DIR:-}
        [ -n "$rt" ] && [ -d "$rt" ] || { rt=$(mktemp -d) && made_rt=$rt; }
        # The units name PI_DIR/current, which still is the running release: verify them as
        # they will read once `current` is this one.
        check=$(mktemp -d)
        for u in $UNITS; do
            sed "s#/current\([/ ]\|\$\)#/releases/$release\1#g" ".deploy/$u" > "$check/$u"
        done
        out=$(cd "$check" && XDG_RUNTIME_DIR=$rt systemd-analyze verify --user $UNITS 2>&1)
        rc=$?
        rm -rf "$check"
        [ -n "${made_rt:-}" ] && rm -rf "$made_rt"
        # A complaint about our units fails; one about some other package's unit (pulled in
        # as a default dependency on a real Pi) is only shown.
        ours=$(echo "$out" | grep fer-edge)
        [ $rc -eq 0 ] && [ -z "$ours" ] || fail "systemd-analyze verify: $(echo "$out" | tr '\n' ' ')"
        [ -z "$out" ] || echo "$out" | sed 's/^/warning: systemd-analyze: /'
        echo "units verified: $UNITS"
    else
        echo "warning: systemd-analyze not found: units not verified"
    fi

    step switch
    switch_to "releases/$release"
    prune

    step service
    restart_service
}

# Point `current` at $1 (releases/ID) and `previous` at what it was, each by rename(2).
switch_to() {
    old=$(readlink "$ROOT/current" 2>/dev/null || true)
    if [ "$old" = "$1" ]; then
        echo "current is already $1"
        return 0
    fi
    ln -sfn "$1" "$ROOT/.current.new" && mv -T "$ROOT/.current.new" "$ROOT/current" \
        || fail "cannot point $ROOT/current at $1"
    if [ -n "$old" ]; then
        ln -sfn "$old" "$ROOT/.previous.new" && mv -T "$ROOT/.previous.new" "$ROOT/previous"
    fi
    echo "current -> $1 (was ${old:-nothing})"
    # A PI_DIR from before releases/: its flat files go once a release runs (logs/ stays).
    if [ -f "$ROOT/.deploy/remote.sh" ]; then
        (cd "$ROOT" && rm -rf .deploy .venv Makefile fer_edge models requirements-edge.txt) \
            && echo "removed the pre-release layout's files from $ROOT"
    fi
}

# Keep current and previous, delete other releases (and interrupted transfers) and venvs
# that neither uses.
prune() {
    keep="$(readlink "$ROOT/current") $(readlink "$ROOT/previous" 2>/dev/null)"
    for r in "$ROOT"/releases/*; do
        [ -e "$r" ] || continue
        case " $keep " in *" releases/${r##*/} "*) continue ;; esac
        # An interrupted transfer of the release being set up cannot exist here; others go.
        rm -rf "$r" && echo "removed old ${r#$ROOT/}"
    done
    used="$(readlink "$ROOT/current/.venv") $(readlink "$ROOT/previous/.venv" 2>/dev/null)"
    for v in "$ROOT"/venvs/*; do
        [ -e "$v" ] || continue
        case " $used " in *"/venvs/${v##*/} "*) continue ;; esac
        rm -rf "$v" && echo "removed unused venvs/${v##*/}"
    done
}

restart_service() {
    if ! have_user_systemd --linger; then
        echo "service steps skipped: $why." \
             "The units stay in $ROOT/current/.deploy; run by hand on the Pi with: make run"
        return 0
    fi
    mkdir -p "$UNIT_DIR" || fail "cannot create $UNIT_DIR"
    for u in $UNITS; do
        cmp -s "$ROOT/current/.deploy/$u" "$UNIT_DIR/$u" && continue
        # Copy then rename, so systemd never reads half a unit.
        cp "$ROOT/current/.deploy/$u" "$UNIT_DIR/.$u.tmp" && mv -f "$UNIT_DIR/.$u.tmp" "$UNIT_DIR/$u" \
            || fail "cannot write $UNIT_DIR/$u"
        echo "installed $UNIT_DIR/$u"
    done
    systemctl --user daemon-reload || fail "systemctl --user daemon-reload failed"
    systemctl --user enable --quiet "$UNIT" "$TIMER" || fail "systemctl --user enable failed"
    systemctl --user start "$TIMER" || fail "systemctl --user start $TIMER failed"
    systemctl --user reset-failed "$UNIT" 2>/dev/null  # a new deploy deserves fresh retries
    systemctl --user restart "$UNIT" \
        || fail "systemctl --user restart $UNIT failed; see: make deploy-status"
    sleep 3  # long enough to catch a crash at start-up (missing camera, bad model)
    state=$(systemctl --user is-active "$UNIT")
    echo "$UNIT restarted: $state"
    [ "$state" = active ] || echo "warning: $UNIT is $state; see: make deploy-status"
}

rollback() {
    step rollback
    prev=$(readlink "$ROOT/previous" 2>/dev/null) || fail "no previous release in $ROOT to roll back to"
    [ -f "$ROOT/$prev/.deploy/remote.sh" ] || fail "the previous release $ROOT/$prev is gone"
    switch_to "$prev"
    step service
    restart_service
}

status() {
    step status
    echo "release: $(readlink "$ROOT/current") (previous: $(readlink "$ROOT/previous" 2>/dev/null || echo none))"
    if have_user_systemd; then
        systemctl --user status "$UNIT" "$TIMER" --no-pager --lines 10
        echo "is-active: $(systemctl --user is-active "$UNIT")"
    else
        echo "service: $why; nothing to ask systemd"
    fi
    if [ -s "$EVENTS" ]; then
        echo "last events ($ROOT/$EVENTS, $(wc -l < "$EVENTS") lines):"
        tail -n 5 "$EVENTS"
    else
        echo "no events yet in $ROOT/$EVENTS"
    fi
}

logs() {
    if [ "${1:-}" = --journal ]; then
        have_user_systemd || fail "$why; no journal to follow"
        exec journalctl --user -u "$UNIT" -n 50 -f
    fi
    mkdir -p "$ROOT/logs"
    echo "following $ROOT/$EVENTS (Ctrl-C to stop)"
    exec tail -n 20 -F "$EVENTS"
}

undeploy() {
    step service
    if have_user_systemd; then
        systemctl --user disable --now --quiet "$UNIT" "$TIMER" 2>/dev/null
        echo "stopped and disabled $UNIT and $TIMER"
    else
        echo "service steps skipped: $why"
    fi
    step units
    for u in $UNITS; do
        if [ -e "$UNIT_DIR/$u" ]; then rm -f "$UNIT_DIR/$u" && echo "removed $UNIT_DIR/$u"; fi
    done
    if have_user_systemd; then systemctl --user daemon-reload; fi
    step files
    if [ "${1:-}" = --purge ]; then
        cd / && rm -rf "$ROOT" || fail "cannot remove $ROOT"
        echo "removed $ROOT (releases, venvs, logs and all)"
    else
        echo "kept $ROOT (releases, venvs and logs; PURGE=1 removes it)"
    fi
}

STEP=start
case "${1:-}" in
    setup) setup "${2:?setup needs the release id}" ;;
    status) status ;;
    rollback) rollback ;;
    logs) shift; logs "$@" ;;
    undeploy) shift; undeploy "$@" ;;
    *) echo "usage: sh .deploy/remote.sh setup ID|status|logs [--journal]|rollback|undeploy [--purge]"; exit 2 ;;
esac
