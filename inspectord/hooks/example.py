"""The example hook: logs what it is given, changes nothing."""

from twisted.logger import Logger

from inspectord.processing.hooks import ProcessingHook, processing_hook


@processing_hook
class ExampleHook(ProcessingHook):
    """A template for writing hooks: both methods log at debug level."""

    name = "example"
    log = Logger()

    def before_processing(self, data):
        self.log.debug("before_processing: {keys}", keys=sorted(data))

    def before_update(self, data, node):
        self.log.debug("before_update: {keys} (node {node})", keys=sorted(data), node=node.uuid)
