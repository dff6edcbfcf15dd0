# The storage role image: the base plus the storage packages, installed by the same packages step
# (render/scripts/packages.sh, config/packages.py) that `pulumi up` runs on a storage node.
build {
  name = "storage"

  source "source.qemu.role" {
    vm_name          = "storage.qcow2"
    output_directory = "${var.output_dir}/storage"
  }

  provisioner "shell" {
    script = "${var.packages_dir}/storage.sh"
  }

  provisioner "shell" {
    script = "${var.scripts_dir}/finalize.sh"
  }
}
