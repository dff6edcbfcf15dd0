# Format the controller's protected state volume once, and mount it by label. Never reformats.
wait_for "state device $STATE_DEVICE" 60 test -b "$STATE_DEVICE"
if ! blkid -o value -s TYPE "$STATE_DEVICE" >/dev/null 2>&1; then
  log "new state volume: creating ext4 on $STATE_DEVICE"
  mkfs.ext4 -q -L "$STATE_LABEL" "$STATE_DEVICE"
fi
install -d -m 0755 "$STATE_MOUNT"
if ! grep -q "^LABEL=$STATE_LABEL " /etc/fstab; then
  printf 'LABEL=%s %s ext4 defaults,nofail 0 2\n' "$STATE_LABEL" "$STATE_MOUNT" >> /etc/fstab
fi
mountpoint -q "$STATE_MOUNT" || mount "$STATE_MOUNT"
log "state volume mounted at $STATE_MOUNT"
