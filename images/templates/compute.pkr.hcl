# The compute role image: the base plus the compute packages, installed by the same packages step
# (render/scripts/packages.sh, config/packages.py) that `pulumi up` runs on a compute node.
build {
  name = "compute"

  source "source.qemu.role" {
    vm_name          = "compute.qcow2"
    output_directory = "${var.output_dir}/compute"
  }

  provisioner "shell" {
    script = "${var.packages_dir}/compute.sh"
  }

  provisioner "shell" {
    script = "${var.scripts_dir}/finalize.sh"
  }
}
