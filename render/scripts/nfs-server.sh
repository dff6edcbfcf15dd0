# Serve the shared directory over NFS from this storage node's first data volume (mounted by the
# data-volume step), to the management network only. Idempotent: the export file is rewritten only when
# it changes, and exportfs re-reads it without interrupting clients.
mountpoint -q "$VOLUME_MOUNT" || die "$VOLUME_MOUNT is not mounted: the data volume step did not run"
if [ ! -d "$EXPORT_DIR" ]; then
  # Everyone may create their own directories, nobody may remove another's (like /tmp).
  install -d -m 1777 "$EXPORT_DIR"
fi
[ -d "$(dirname "$EXPORTS_FILE")" ] || install -d -m 0755 "$(dirname "$EXPORTS_FILE")"
if [ "$(cat "$EXPORTS_FILE" 2>/dev/null)" != "$EXPORT" ]; then
  printf '%s\n' "$EXPORT" > "$EXPORTS_FILE.tmp"
  mv -f "$EXPORTS_FILE.tmp" "$EXPORTS_FILE"
  log "export: $EXPORT"
fi
svc_start nfs-server
exportfs -ra
exportfs -v | grep -q "^$EXPORT_DIR" || die "$EXPORT_DIR is not exported: see exportfs -v"
log "NFS serves $EXPORT"
