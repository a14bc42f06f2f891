"""Processing of ramdisk data: formats, hooks, and the changes they make."""
