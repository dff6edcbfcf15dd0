# Mount the cluster's shared file system at MOUNT, now and at every boot (fstab). The server may still be
# coming up: mounting is retried for up to WAIT seconds, then fails with what was tried. LINE is its fstab line.
source=${LINE%% *}
[ -d "$MOUNT" ] || install -d -m 0755 "$MOUNT"
current=$(awk -v m="$MOUNT" '$2 == m' /etc/fstab)
if [ "$current" != "$LINE" ]; then
  # one line for MOUNT: the managed one
  awk -v m="$MOUNT" '$2 != m' /etc/fstab > /etc/fstab.hyperscaler
  printf '%s\n' "$LINE" >> /etc/fstab.hyperscaler
  mv -f /etc/fstab.hyperscaler /etc/fstab
  if mountpoint -q "$MOUNT"; then
    log "$MOUNT changed in fstab: remounting"
    umount "$MOUNT" || die "$MOUNT is busy and its source changed: stop what uses it, then run again"
  fi
fi
deadline=$((SECONDS + WAIT))
until mountpoint -q "$MOUNT"; do
  if ! error=$(mount "$MOUNT" 2>&1); then
    [ "$SECONDS" -lt "$deadline" ] || die "cannot mount $source on $MOUNT after ${WAIT}s: $error"
    sleep 3
  fi
done
log "$source mounted at $MOUNT"
