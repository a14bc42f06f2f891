"""The capabilities hook: boot mode and CPU flags as node capabilities."""

from inspectord.processing.hooks import ProcessingHook, get_inventory, processing_hook


@processing_hook
class CapabilitiesHook(ProcessingHook):
    """``boot_mode`` (with ``[capabilities]boot_mode``) and ``[capabilities]cpu_flags``."""

    name = "capabilities"

    def before_update(self, data, node):
        inventory = get_inventory(data)
        caps = {}
        if self.config.capabilities.boot_mode:
            mode = (inventory.get("boot") or {}).get("current_boot_mode")
            if mode:
                caps["boot_mode"] = mode
        flags = set((inventory.get("cpu") or {}).get("flags") or [])
        for flag, name in sorted(self.config.capabilities.cpu_flags.items()):
            if flag in flags:
                caps[name] = "true"
        if caps:
            node.update_capabilities(**caps)
