# Bakes the shoplab box: Debian 12 with PostgreSQL, systemd-resolved, Consul and the shoplab services
# installed (nothing enabled), so `vagrant up` needs no internet. `make box` runs it; see README.md.
packer {
  required_version = ">= 1.11.0"
  required_plugins {
    qemu = {
      version = ">= 1.0.9"
      source  = "github.com/hashicorp/qemu"
    }
    vagrant = {
      version = ">= 1.0.3"
      source  = "github.com/hashicorp/vagrant"
    }
    virtualbox = {
      version = ">= 1.0.4"
      source  = "github.com/hashicorp/virtualbox"
    }
  }
}

variable "base_image" {
  type        = string
  description = "The qcow2 the qemu source starts from: Debian 12's generic cloud image, or any local qcow2."
  default     = "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-generic-amd64.qcow2"
}

variable "base_image_checksum" {
  type        = string
  description = "Checksum of base_image (\"none\" for a local image you built yourself)."
  default     = "file:https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS"
}

variable "cloud_init" {
  type        = bool
  description = "Give the image a cloud-init seed that creates the vagrant user (the cloud image needs it)."
  default     = true
}

variable "accelerator" {
  type        = string
  description = "qemu accelerator: kvm, or tcg without hardware virtualisation."
  default     = "kvm"
}

variable "kernel" {
  type        = string
  description = "Boot this kernel directly (an image without a bootloader); empty boots the disk."
  default     = ""
}

variable "initrd" {
  type    = string
  default = ""
}

variable "kernel_cmdline" {
  type    = string
  default = "root=/dev/vda rw console=ttyS0 quiet net.ifnames=0"
}

variable "debian_iso_url" {
  type        = string
  description = "Debian 12 netinst ISO for the virtualbox source."
  default     = "https://cdimage.debian.org/cdimage/archive/12.12.0/amd64/iso-cd/debian-12.12.0-amd64-netinst.iso"
}

variable "debian_iso_checksum" {
  type    = string
  default = "file:https://cdimage.debian.org/cdimage/archive/12.12.0/amd64/iso-cd/SHA256SUMS"
}

variable "binaries" {
  type        = string
  description = "Directory with the linux binaries to bake in: consul and every service (make vm-binaries)."
  default     = "../bin/linux-amd64"
}

variable "ssh_private_key_file" {
  type        = string
  description = "Vagrant's insecure private key (Vagrant swaps it for a fresh key on first boot)."
}

variable "ssh_public_key_file" {
  type        = string
  description = "The matching public key, given to the vagrant user by cloud-init."
}

variable "ssh_timeout" {
  type    = string
  default = "30m"
}

variable "memory" {
  type    = number
  default = 1024
}

variable "cpus" {
  type    = number
  default = 2
}

variable "output_dir" {
  type    = string
  default = "output"
}

variable "compression" {
  type        = bool
  description = "Compress the disk and the box (smaller to keep or share; make vm-test, which adds the box at once, saves the minutes)."
  default     = true
}

locals {
  direct_boot = var.kernel == "" ? [] : [
    ["-kernel", var.kernel],
    ["-initrd", var.initrd],
    ["-append", var.kernel_cmdline],
  ]
}

source "qemu" "debian12" {
  disk_image       = true
  iso_url          = var.base_image
  iso_checksum     = var.base_image_checksum
  format           = "qcow2"
  disk_size        = "6G"
  disk_interface   = "virtio"
  disk_compression = var.compression
  net_device       = "virtio-net"
  accelerator      = var.accelerator
  headless         = true
  memory           = var.memory
  cpus             = var.cpus
  qemuargs         = local.direct_boot
  cd_label         = "cidata"
  cd_content = var.cloud_init ? {
    "meta-data" = "instance-id: shoplab-bake\nlocal-hostname: shoplab\n"
    "user-data" = templatefile("${path.root}/user-data.pkrtpl", { public_key = trimspace(file(var.ssh_public_key_file)) })
  } : {}
  ssh_username         = "vagrant"
  ssh_private_key_file = var.ssh_private_key_file
  ssh_timeout          = var.ssh_timeout
  shutdown_command     = "sudo systemctl poweroff"
  vm_name              = "shoplab-debian12.qcow2"
  output_directory     = "${var.output_dir}/qemu"
}

source "virtualbox-iso" "debian12" {
  guest_os_type        = "Debian_64"
  iso_url              = var.debian_iso_url
  iso_checksum         = var.debian_iso_checksum
  http_directory       = "${path.root}/http"
  boot_wait            = "5s"
  boot_command         = ["<esc><wait>", "auto preseed/url=http://{{ .HTTPIP }}:{{ .HTTPPort }}/preseed.cfg priority=critical<enter>"]
  disk_size            = 8192
  memory               = var.memory
  cpus                 = var.cpus
  headless             = true
  ssh_username         = "vagrant"
  ssh_password         = "vagrant"
  ssh_timeout          = var.ssh_timeout
  shutdown_command     = "echo vagrant | sudo -S systemctl poweroff"
  guest_additions_mode = "disable"
  output_directory     = "${var.output_dir}/virtualbox"
}

build {
  sources = ["source.qemu.debian12", "source.virtualbox-iso.debian12"]

  provisioner "shell" {
    inline = ["mkdir -p /tmp/shoplab/bin"]
  }

  provisioner "file" {
    source      = "${path.root}/../provisioning"
    destination = "/tmp/shoplab"
  }

  provisioner "file" {
    source      = "${var.binaries}/"
    destination = "/tmp/shoplab/bin"
  }

  # Vagrant's public key for the vagrant user (bake.sh then locks every password login).
  provisioner "file" {
    source      = var.ssh_public_key_file
    destination = "/tmp/shoplab/vagrant.pub"
  }

  provisioner "shell" {
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} bash {{ .Path }}"
    inline          = ["bash /tmp/shoplab/provisioning/bake.sh"]
  }

  post-processor "vagrant" {
    output            = "${var.output_dir}/shoplab-{{ .Provider }}.box"
    compression_level = var.compression ? 6 : 0
  }
}
