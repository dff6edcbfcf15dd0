# The source every role image is built from: the pinned base image booted under QEMU, reached over SSH
# with a key made for this build (hyperscaler/imagebuild.py renders the seed and the role scripts).
# Packer 1.6.6 (Debian 12) has the qemu builder built in; current Packer gets it from `packer init` with
# ../plugins.pkr.hcl, which is kept out of this directory because 1.6.6 refuses `required_plugins`.

variable "base_image" {
  type        = string
  description = "Path of the base image (a Debian cloud image, or the offline debootstrap base)."
}

variable "base_sha256" {
  type        = string
  description = "The base image's sha256: Packer checks it before booting it."
}

variable "base_format" {
  type    = string
  default = "qcow2"
}

variable "output_dir" {
  type        = string
  description = "Each role's image is written to <output_dir>/<role>/<role>.qcow2."
}

variable "packages_dir" {
  type        = string
  description = "The rendered packages step of each role: <packages_dir>/<role>.sh."
}

variable "scripts_dir" {
  type        = string
  description = "This repository's images/scripts."
}

variable "seed_dir" {
  type        = string
  description = "cloud-init NoCloud seed (user-data, meta-data) that lets the build log in as root."
}

variable "ssh_private_key_file" {
  type = string
}

variable "accelerator" {
  type    = string
  default = "kvm"
}

variable "disk_size" {
  type    = string
  default = "4096M"
}

variable "memory" {
  type    = number
  default = 1024
}

variable "cpus" {
  type    = number
  default = 1
}

# Direct kernel boot, for a base without a boot loader (the offline debootstrap base); empty for a cloud image.
variable "kernel" {
  type    = string
  default = ""
}

variable "initrd" {
  type    = string
  default = ""
}

variable "cmdline" {
  type    = string
  default = "root=/dev/vda rw console=ttyS0"
}

locals {
  direct_boot = var.kernel == "" ? [] : [["-kernel", var.kernel], ["-initrd", var.initrd], ["-append", var.cmdline]]
}

source "qemu" "role" {
  disk_image           = true
  iso_url              = var.base_image
  iso_checksum         = "sha256:${var.base_sha256}"
  format               = "qcow2"
  disk_interface       = "virtio"
  net_device           = "virtio-net"
  disk_size            = var.disk_size
  accelerator          = var.accelerator
  memory               = var.memory
  cpus                 = var.cpus
  headless             = true
  disable_vnc          = true
  qemuargs             = local.direct_boot
  cd_files             = ["${var.seed_dir}/user-data", "${var.seed_dir}/meta-data"]
  cd_label             = "cidata"
  communicator         = "ssh"
  ssh_username         = "root"
  ssh_private_key_file = var.ssh_private_key_file
  ssh_timeout          = "30m"
  shutdown_command     = "shutdown -P now"
  shutdown_timeout     = "10m"
}
