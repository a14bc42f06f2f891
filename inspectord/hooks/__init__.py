"""inspectord's own processing hooks, as Twisted plugins.

Every module here is searched by ``twisted.plugin.getPlugins(IProcessingHook,
inspectord.hooks)``; a hook class decorated with
:data:`inspectord.processing.hooks.processing_hook` is found under its
``name``.  Third-party hooks live in their own packages (see
:mod:`inspectord.processing.hooks`).
"""
