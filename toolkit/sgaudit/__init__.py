"""sgaudit: which AWS security group rules are used, proved from VPC Flow Logs.

The one call most users need::

    import sgaudit
    result = sgaudit.analyze(flow_logs="sample_logs/flow-logs", inventory="sample_logs/inventory")
    result.usage          # one row per rule: status, evidence, connections, peers, ports, last seen
    result.unexplained    # accepted traffic that no rule explains
    result.rejected       # rejected attempts per interface, direction, protocol and port
    result.coverage       # which interfaces were observed
    result.quality        # every record read, by bucket
"""

from .analysis import Analysis, analyze
from .errors import (
    FlowLogFormatError,
    FlowLogReadError,
    InventoryError,
    SgauditError,
    WindowError,
)
from .inventory import Inventory
from .inventory import load as load_inventory

__version__ = "0.1.0"

#: Modules reached as ``sgaudit.<name>`` without importing them first (``sgaudit.report.run(...)``,
#: ``sgaudit.notebook.setup()``). Imported on first use: plotly, papermill and boto3 cost seconds, and
#: ``import sgaudit`` for the analysis alone should not pay for them.
_SUBMODULES = frozenset({
    "collect", "engines", "explorers", "figures", "findings", "inventory", "notebook", "plan", "printing",
    "reduction", "remote", "report", "sources", "summaries", "tables", "timeline",
})


def __getattr__(name: str):
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "Analysis", "Inventory", "analyze", "load_inventory", "SgauditError", "FlowLogFormatError",
    "FlowLogReadError", "InventoryError", "WindowError", "__version__",
]
