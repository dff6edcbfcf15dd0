# --- hyperscaler script library (render/scripts/lib.sh), included in every remote script ---
# Services start the way the node's init does: systemd when it is PID 1, the daemon itself otherwise
# (container-like test nodes). Every function is safe to call twice.

log() { printf '[%s] %s\n' "${SCRIPT_NAME:-hyperscaler}" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

have_systemd() { [ -d /run/systemd/system ]; }

# The state directory remembers what each step last applied, so a second run changes nothing.
APPLIED_DIR=/var/lib/hyperscaler/applied
applied_get() { cat "$APPLIED_DIR/$1" 2>/dev/null || true; }
applied_set() { install -d -m 0700 "$APPLIED_DIR"; printf '%s\n' "$2" > "$APPLIED_DIR/$1.tmp"; mv -f "$APPLIED_DIR/$1.tmp" "$APPLIED_DIR/$1"; }

pidfile_of() {
  case "$1" in
    munge) echo /run/munge/munged.pid ;;
    mariadb) echo /run/mysqld/mysqld.pid ;;
    dnsmasq) echo /run/dnsmasq/dnsmasq.pid ;;
    prometheus*) echo "/run/prometheus/$1.pid" ;;  # as Debian's init scripts have them
    *) echo "/run/${1%.timer}.pid" ;;
  esac
}

daemon_of() {
  case "$1" in
    munge) echo munged ;;
    mariadb) echo mariadbd ;;
    *) echo "$1" ;;
  esac
}

# pid_is NAME PID: PID is NAME's process. A daemon is known by its name (the kernel keeps 15 characters of
# it); a timer's stand-in loop, a script run by bash, by its command line.
pid_is() {
  local want
  [ -d "/proc/$2" ] || return 1
  case "$1" in
    *.timer)
      tr '\0' ' ' < "/proc/$2/cmdline" 2>/dev/null | grep -q -- "/${1%.timer}.sh loop" ;;
    *)
      want=$(daemon_of "$1")
      [ "$(cat "/proc/$2/comm" 2>/dev/null)" = "${want:0:15}" ] ;;
  esac
}

svc_running() {
  if have_systemd; then
    systemctl is-active --quiet "$1"
  else
    local pidfile
    pidfile=$(pidfile_of "$1")
    [ -s "$pidfile" ] || return 1
    pid_is "$1" "$(cat "$pidfile")"
  fi
}

start_direct() {
  case "$1" in
    munge)
      install -d -o munge -g munge -m 0755 /run/munge
      runuser -u munge -- /usr/sbin/munged ;;
    mariadb)
      install -d -o mysql -g mysql -m 0755 /run/mysqld
      (setsid /usr/bin/mysqld_safe >/dev/null 2>&1 &) ;;
    slurmd)
      # as Debian's slurmd.service does: options from /etc/default/slurmd; and as hyperscaler's drop-in
      # for MIG nodes does (render/mig.py: slurmd_dropin): GRES from the MIG devices that exist, first
      [ ! -x /usr/local/libexec/hyperscaler/mig-gres.sh ] || /usr/local/libexec/hyperscaler/mig-gres.sh write
      local SLURMD_OPTIONS=""
      # shellcheck disable=SC1091
      [ -r /etc/default/slurmd ] && . /etc/default/slurmd
      # shellcheck disable=SC2086 # options are words
      /usr/sbin/slurmd $SLURMD_OPTIONS ;;
    slurmctld | slurmdbd)
      "/usr/sbin/$1" ;;
    dnsmasq)
      # as Debian's init script does: the configuration files of /etc/dnsmasq.d
      install -d -m 0755 /run/dnsmasq
      /usr/sbin/dnsmasq -7 /etc/dnsmasq.d,.dpkg-dist,.dpkg-old,.dpkg-new --pid-file=/run/dnsmasq/dnsmasq.pid ;;
    prometheus | prometheus-alertmanager | prometheus-node-exporter)
      # as Debian's init scripts do: ARGS from /etc/default/NAME, the prometheus user, a log per daemon
      local ARGS=""
      # shellcheck disable=SC1090
      [ -r "/etc/default/$1" ] && . "/etc/default/$1"
      install -d -o prometheus -g prometheus -m 0755 /run/prometheus /var/log/prometheus
      # shellcheck disable=SC2086 # ARGS are words
      start-stop-daemon --start --quiet --background --no-close --make-pidfile --pidfile "$(pidfile_of "$1")" \
        --chuid prometheus:prometheus --exec "/usr/bin/$1" -- $ARGS \
        </dev/null >>"/var/log/prometheus/$1.log" 2>&1 ;;
    *.timer)
      # no systemd to run the timer: a loop of the timer's script (beside this one) stands in for it
      rm -f "$(pidfile_of "$1")"  # svc_running found no loop: whatever the file names is another process
      start-stop-daemon --start --quiet --background --make-pidfile --pidfile "$(pidfile_of "$1")" \
        --startas "$(dirname "$(readlink -f "$0")")/${1%.timer}.sh" -- loop ;;
    *) die "no direct start for $1" ;;
  esac
}

stop_direct() {
  local pidfile pid
  pidfile=$(pidfile_of "$1")
  [ -s "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if pid_is "$1" "$pid"; then
    kill "$pid"
    for _ in $(seq 1 100); do [ -d "/proc/$pid" ] || return 0; sleep 0.1; done
    die "$1 (pid $pid) did not stop"
  fi
}

svc_start() {
  if have_systemd; then
    systemctl enable --now "$1"
  elif ! svc_running "$1"; then
    start_direct "$1"
  fi
}

# svc_reload NAME: ask the daemon to re-read its files (SIGHUP), without a restart.
svc_reload() {
  if have_systemd; then
    systemctl reload "$1"
  else
    kill -HUP "$(cat "$(pidfile_of "$1")")"
  fi
}

svc_restart() {
  if have_systemd; then
    systemctl enable "$1"
    systemctl restart "$1"
  else
    stop_direct "$1"
    start_direct "$1"
  fi
}

# svc_dropin NAME TEXT: systemd only: TEXT as NAME's drop-in (ordering, restarts), re-read when it changed.
svc_dropin() {
  have_systemd || return 0
  local file="/etc/systemd/system/$1.d/hyperscaler.conf"
  if [ "$(cat "$file" 2>/dev/null)" != "$2" ]; then
    install -d -m 0755 "$(dirname "$file")"
    printf '%s\n' "$2" > "$file.tmp"
    mv -f "$file.tmp" "$file"
    systemctl daemon-reload
  fi
}

# port_open HOST PORT: something accepts TCP connections there.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# write_textfile FILE: stdin becomes FILE, a node-exporter textfile metric, atomically: node-exporter
# reads only *.prom files, and the temporary file is not one, so a scrape never sees half a file.
write_textfile() {
  local tmp
  install -d -m 0755 "$(dirname "$1")"
  tmp=$(mktemp "$1.XXXXXX")
  cat > "$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$1"
}

# wait_for DESCRIPTION SECONDS COMMAND...: poll until COMMAND succeeds.
wait_for() {
  local what=$1 seconds=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "timed out after ${seconds}s waiting for $what"
    sleep 0.5
  done
}
# --- end of library ---
