#!/usr/bin/env bash
# The last step of every role image build: remove what must be each VM's own, from its own first boot,
# and what the build itself left behind. Runs as root inside the build VM.
set -euo pipefail

# Per-VM identity: host keys come from cloud-init (the program pins them), machine-id from systemd, and
# the munge key from the program (a key baked into an image would be shared by every cluster built from it).
rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub /etc/munge/munge.key
truncate -s 0 /etc/machine-id
rm -f /var/lib/dbus/machine-id

# The build's own login and cloud-init state: the VM's first boot runs cloud-init from scratch.
rm -f /root/.ssh/authorized_keys
cloud-init clean --logs --seed

# No package lists or downloaded packages in the image: a node refreshes the lists before installing.
apt-get clean
rm -rf /var/lib/apt/lists/*
rm -f /usr/sbin/policy-rc.d
sync
