# Format the controller's protected state volume once, then mount it by its serial. Never reformats:
# only a disk with no signature at all (blkid -p exit 2) is formatted.
wait_for "state device $STATE_DEVICE" 60 test -b "$STATE_DEVICE"
rc=0
fstype=$(blkid -p -o value -s TYPE "$STATE_DEVICE") || rc=$?
if [ "$rc" -eq 2 ]; then
  log "new state volume: creating ext4 on $STATE_DEVICE"
  mkfs.ext4 -q -L "$STATE_LABEL" "$STATE_DEVICE"
elif [ "$rc" -ne 0 ]; then
  die "cannot probe $STATE_DEVICE (blkid exit $rc)"
elif [ "$fstype" != ext4 ]; then
  die "$STATE_DEVICE holds $fstype, not ext4: refusing to touch it"
fi
install -d -m 0755 "$STATE_MOUNT"
# By serial (by-id), not by label: it names this very disk whatever else is attached.
if ! grep -q "^$STATE_DEVICE " /etc/fstab; then
  printf '%s %s ext4 defaults,nofail 0 2\n' "$STATE_DEVICE" "$STATE_MOUNT" >> /etc/fstab
fi
mountpoint -q "$STATE_MOUNT" || mount "$STATE_DEVICE" "$STATE_MOUNT"
log "state volume mounted at $STATE_MOUNT"
