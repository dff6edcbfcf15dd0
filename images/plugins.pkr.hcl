# For current Packer only (1.7 and later): `packer init` installs the qemu plugin from this file. Packer
# 1.6.6 (Debian 12) has the builder built in and refuses this block, so the templates live in templates/
# and hyperscaler/imagebuild.py adds this file beside them only when the Packer it runs is 1.7 or later.
packer {
  required_plugins {
    qemu = {
      version = ">= 1.1.0"
      source  = "github.com/hashicorp/qemu"
    }
  }
}
