# docker.sh: Docker Engine with the daemon.json the program rendered (STAGED). A changed file goes into
# effect only once a real dockerd accepts it: `dockerd --validate` where the engine has it (23.0 and
# later), otherwise by restarting with it and putting the previous file back if dockerd does not come up.
# The docker group (root on this node) holds exactly GROUP_MEMBERS; nobody else is added.
DOCKER_LOG=/var/log/hyperscaler-dockerd.log
# Without systemd, the pid of the dockerd this step started (dockerd writes /run/docker.pid only once it runs).
LAUNCH_PID=/run/hyperscaler-dockerd.pid

docker_up() { docker info >/dev/null 2>&1; }

dockerd_pid() {  # the running dockerd's pid, from its own pidfile or the one this step wrote
  local f pid
  for f in /run/docker.pid "$LAUNCH_PID"; do
    pid=$(cat "$f" 2>/dev/null || true)
    if [ -n "$pid" ] && pid_is dockerd "$pid" && ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null; then
      echo "$pid"
      return 0
    fi
  done
  return 1
}

# Up with the new file, or given up: then the wait below stops early and the previous file comes back.
dockerd_settled() {
  docker_up && return 0
  if have_systemd; then
    systemctl is-failed --quiet docker.service
  elif dockerd_pid >/dev/null; then
    return 1  # still starting
  fi
}

start_dockerd() {
  if have_systemd; then
    systemctl enable docker.service docker.socket >/dev/null 2>&1 || true
    systemctl restart docker.service || true  # a refused file shows below, where it is put back
  else
    stop_dockerd
    # as docker.service runs it, with its own log
    start-stop-daemon --start --quiet --background --no-close --make-pidfile --pidfile "$LAUNCH_PID" \
      --exec /usr/sbin/dockerd -- --config-file "$DAEMON_JSON" </dev/null >>"$DOCKER_LOG" 2>&1
  fi
}

stop_dockerd() {
  local pid
  pid=$(dockerd_pid) || return 0
  kill "$pid"
  for _ in $(seq 1 200); do [ -d "/proc/$pid" ] || return 0; sleep 0.1; done
  die "dockerd (pid $pid) did not stop"
}

dockerd_refuses() {  # dockerd_refuses FILE: prints dockerd's complaint and succeeds when FILE is refused
  local out
  if dockerd --help 2>&1 | grep -q -- '--validate'; then
    if out=$(dockerd --validate --config-file "$1" 2>&1); then
      return 1
    fi
    printf '%s\n' "$out"
    return 0
  fi
  return 1  # no offline check: the restart below is the check
}

command -v dockerd >/dev/null || die "dockerd is missing: the packages step installs docker.io"
[ -s "$STAGED" ] || die "$STAGED is missing: its file Command runs first"
if complaint=$(dockerd_refuses "$STAGED"); then
  die "dockerd refuses the rendered daemon.json ($STAGED), $DAEMON_JSON is unchanged: $complaint"
fi

install -d -m 0755 "$(dirname "$DAEMON_JSON")"
changed=0
if ! cmp -s "$STAGED" "$DAEMON_JSON"; then
  [ ! -e "$DAEMON_JSON" ] || cp -p "$DAEMON_JSON" "$DAEMON_JSON.previous"
  install -m 0644 "$STAGED" "$DAEMON_JSON.tmp"
  mv -f "$DAEMON_JSON.tmp" "$DAEMON_JSON"
  changed=1
fi
if [ "$changed" = 1 ] || ! docker_up; then
  log "starting dockerd with $DAEMON_JSON"
  start_dockerd
  if ! (wait_for "dockerd" 60 dockerd_settled) || ! docker_up; then
    if [ -e "$DAEMON_JSON.previous" ]; then
      mv -f "$DAEMON_JSON.previous" "$DAEMON_JSON"
      start_dockerd
      (wait_for "dockerd with the previous daemon.json" 60 docker_up) || true
    fi
    tail -n 20 "$DOCKER_LOG" >&2 2>/dev/null || journalctl -u docker.service -n 20 --no-pager >&2 || true
    die "dockerd did not start with the rendered daemon.json; the previous one is back in place"
  fi
fi
rm -f "$DAEMON_JSON.previous"

# The docker group: exactly GROUP_MEMBERS (the admin, whose SSH login pulumi-docker uses, and the stack's
# containers.docker.group_members).
getent group docker >/dev/null || groupadd --system docker
for user in $GROUP_MEMBERS; do
  id "$user" >/dev/null 2>&1 || die "containers.docker.group_members: no user $user on this node"
  id -nG "$user" | tr ' ' '\n' | grep -qx docker || { usermod -aG docker "$user"; log "added $user to the docker group"; }
done
current=$(getent group docker | cut -d: -f4 | tr ',' ' ')
for user in $current; do
  case " $GROUP_MEMBERS " in
    *" $user "*) ;;
    *) gpasswd -d "$user" docker >/dev/null; log "removed $user from the docker group" ;;
  esac
done
log "docker ready: $(docker version --format '{{.Server.Version}}')"
