# data-volume.sh DEVICE MOUNT FSTYPE LABEL: format a protected data volume once, then mount it by its
# serial. Never reformats: only a disk with no signature at all (blkid -p exit 2) is formatted, and a disk
# holding another file system is refused, not touched.
DEVICE=${1:?usage: data-volume.sh DEVICE MOUNT FSTYPE LABEL}
MOUNT=${2:?usage: data-volume.sh DEVICE MOUNT FSTYPE LABEL}
FSTYPE=${3:?usage: data-volume.sh DEVICE MOUNT FSTYPE LABEL}
LABEL=${4:?usage: data-volume.sh DEVICE MOUNT FSTYPE LABEL}
case "$FSTYPE" in
  ext4) mkfs=(mkfs.ext4 -q -L "$LABEL") ;;
  xfs) mkfs=(mkfs.xfs -q -L "$LABEL") ;;
  *) die "unsupported file system $FSTYPE: use ext4 or xfs" ;;
esac
command -v "${mkfs[0]}" >/dev/null || die "${mkfs[0]} is missing: the packages step did not install it"
wait_for "data volume $DEVICE" 60 test -b "$DEVICE"
rc=0
found=$(blkid -p -o value -s TYPE "$DEVICE") || rc=$?
if [ "$rc" -eq 2 ]; then
  log "new data volume: creating $FSTYPE on $DEVICE"
  "${mkfs[@]}" "$DEVICE"
elif [ "$rc" -ne 0 ]; then
  die "cannot probe $DEVICE (blkid exit $rc)"
elif [ "$found" != "$FSTYPE" ]; then
  die "$DEVICE holds $found, not $FSTYPE: refusing to touch it"
fi
[ -d "$MOUNT" ] || install -d -m 0755 "$MOUNT"
# By serial (by-id), not by label: it names this very disk whatever else is attached.
if ! grep -q "^$DEVICE " /etc/fstab; then
  printf '%s %s %s defaults,nofail 0 2\n' "$DEVICE" "$MOUNT" "$FSTYPE" >> /etc/fstab
fi
mountpoint -q "$MOUNT" || mount "$DEVICE" "$MOUNT"
log "$DEVICE mounted at $MOUNT"
