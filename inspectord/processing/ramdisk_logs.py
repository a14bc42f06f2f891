"""Ramdisk logs: the base64 tar.gz a ramdisk sends, kept on disk."""

import base64
import binascii
import os

from twisted.logger import Logger

from inspectord import bmc_address
from inspectord.processing import data as ramdisk_data

log = Logger()


def file_name(options, data, uuid, now):
    """The file name ironic-inspector would give (``ramdisk_logs_filename_format``)."""
    bmcs = bmc_address.from_ramdisk(data)
    return options.ramdisk_logs_filename_format.format(
        uuid=uuid or "unknown",
        mac=(ramdisk_data.pxe_mac(data) or "unknown").replace(":", ""),
        dt=now,
        bmc=bmcs[0] if bmcs else "unknown",
    )


def thd_store(options, data, uuid, now):
    """Write the logs under ``ramdisk_logs_dir`` (blocking); the path or None."""
    logs = data.get("logs")
    if not logs or not options.ramdisk_logs_dir:
        return None
    try:
        content = base64.b64decode(logs, validate=False)
    except (binascii.Error, TypeError, ValueError):
        log.warn("Node {node}: the ramdisk logs are not valid base64; not stored", node=uuid or "unknown")
        return None
    path = os.path.join(options.ramdisk_logs_dir, file_name(options, data, uuid, now))
    try:
        os.makedirs(options.ramdisk_logs_dir, exist_ok=True)
        with open(path, "wb") as f:
            f.write(content)
    except OSError as e:
        log.error("Node {node}: could not store ramdisk logs in {path}: {error}", node=uuid, path=path, error=str(e))
        return None
    log.info("Node {node}: ramdisk logs stored in {path}", node=uuid or "unknown", path=path)
    return path
