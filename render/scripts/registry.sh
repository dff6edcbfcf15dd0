# registry.sh: Debian's docker-registry on the controller, at ADDRESS over TLS with the program's
# certificate, its images on the protected state volume (DATA_DIR). Restarted only when its files change.
REGISTRY_LOG=/var/log/hyperscaler-docker-registry.log
REGISTRY_PID=/run/docker-registry.pid

command -v docker-registry >/dev/null || die "docker-registry is missing: the packages step installs it"
mountpoint -q "$STATE_MOUNT" || die "$STATE_MOUNT is not mounted: the registry's images would land on the root disk"
install -d -m 0750 -o "$REGISTRY_USER" -g "$REGISTRY_USER" "$DATA_DIR"

registry_running() {
  if have_systemd; then
    systemctl is-active --quiet docker-registry
  else
    [ -s "$REGISTRY_PID" ] && pid_is docker-registry "$(cat "$REGISTRY_PID")"
  fi
}

restart_registry() {
  if have_systemd; then
    systemctl enable docker-registry >/dev/null 2>&1 || true
    systemctl restart docker-registry
  else
    if registry_running; then
      kill "$(cat "$REGISTRY_PID")"
      wait_for "docker-registry to stop" 20 bash -c "! kill -0 $(cat "$REGISTRY_PID")"
    fi
    # as Debian's init script runs it
    start-stop-daemon --start --quiet --background --no-close --make-pidfile --pidfile "$REGISTRY_PID" \
      --chuid "$REGISTRY_USER:$REGISTRY_USER" --exec /usr/bin/docker-registry -- serve "$CONFIG" \
      </dev/null >>"$REGISTRY_LOG" 2>&1
  fi
}

registry_answers() { curl -fsS --cacert "$CERT" -o /dev/null "https://$ADDRESS/v2/"; }

key=$(cat "$CONFIG" "$CERT" | sha256sum | cut -d' ' -f1)
if [ "$(applied_get registry)" != "$key" ] || ! registry_running; then
  log "starting docker-registry on $ADDRESS"
  restart_registry
fi
wait_for "the registry to answer on https://$ADDRESS/v2/" 30 registry_answers
applied_set registry "$key"
log "registry ready at $ADDRESS"
