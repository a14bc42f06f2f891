from twisted.application.service import ServiceMaker

inspectord = ServiceMaker(
    "inspectord",
    "inspectord.tap",
    "Bare-metal introspection for OpenStack Ironic (ironic-inspector API).",
    "inspectord",
)
