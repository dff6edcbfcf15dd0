# The BeeGFS management service. PHASE open: initialise its database once (never over an existing one),
# and start it; while servers it expects (EXPECTED) are unknown to it, it runs with registration open.
# PHASE close: once every expected server and target registered (within WAIT seconds), registration is
# closed again, so no stray server can join the file system.
if [ "$VERSION" = 8 ]; then
  require_beegfs beegfs-mgmtd beegfs
  conf=/etc/beegfs/beegfs-mgmtd.toml
else
  require_beegfs beegfs-mgmtd beegfs-ctl beegfs-setup-mgmtd
  conf=/etc/beegfs/beegfs-mgmtd.conf
fi
[ -s /etc/beegfs/conn.auth ] || die "/etc/beegfs/conn.auth is missing: the auth file step did not run"
[ -d "$DATA_DIR" ] || install -d -m 0700 "$DATA_DIR"
if [ "$VERSION" = 8 ] && [ ! -e "$DATA_DIR/mgmtd.sqlite" ]; then
  write_if_changed "$conf" 0644 "$CONF_OPEN" || true
  log "new management database in $DATA_DIR"
  "$(beegfs_tool beegfs-mgmtd)" --config-file="$conf" --init
elif [ "$VERSION" = 7.4 ] && [ ! -e "$DATA_DIR/format.conf" ]; then
  log "new management directory in $DATA_DIR"
  "$(beegfs_tool beegfs-setup-mgmtd)" -p "$DATA_DIR" -C
fi
# shellcheck disable=SC2086 # EXPECTED is a list of words
case "$PHASE" in
  open)
    if ! svc_running beegfs-mgmtd || [ -n "$(beegfs_missing $EXPECTED)" ]; then
      if write_if_changed "$conf" 0644 "$CONF_OPEN"; then
        log "registration of new servers is open"
        svc_restart beegfs-mgmtd
      fi
    fi
    svc_start beegfs-mgmtd
    ;;
  close)
    deadline=$((SECONDS + WAIT))
    while absent=$(beegfs_missing $EXPECTED | paste -sd' ' -) && [ -n "$absent" ]; do
      [ "$SECONDS" -lt "$deadline" ] || die "after ${WAIT}s the management service still lacks: $absent"
      sleep 3
    done
    if write_if_changed "$conf" 0644 "$CONF_CLOSED"; then
      log "every expected server registered: registration of new servers is closed"
      svc_restart beegfs-mgmtd
    fi
    ;;
  *) die "unknown phase $PHASE" ;;
esac
wait_for "the BeeGFS management service" "$WAIT" svc_running beegfs-mgmtd
log "BeeGFS management service ready ($PHASE)"
