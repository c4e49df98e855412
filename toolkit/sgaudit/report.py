"""Run an sgaudit notebook with papermill and export it as one self-contained, offline HTML report.

    from sgaudit import report
    files = report.run("audit_report", "out/audit_report.html",
                       {"flow_logs": ["sample_logs/flow-logs"], "inventory": "sample_logs/inventory"})
    files.html      # what auditors open: prose, tables and figures, no code, no network
    files.notebook  # the executed notebook beside it (out/audit_report.ipynb), for JupyterLab

The HTML makes no request: plotly.js and the DataTables bundle are embedded by the notebook's
`sgaudit.notebook.setup` cell, and the export template leaves out what nbconvert's ``lab`` template loads
from CDNs (require.js, MathJax, mermaid, the ipywidgets renderer). Widgets need a live kernel, so each is
replaced by a one-line note; the plotly dropdowns carry a report's interactivity. `run` checks the result
with `external_references` and refuses to write a report that would fetch anything.
"""

from __future__ import annotations

import difflib
import html.parser
import os
import re
import site
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import yaml

from .errors import SgauditError, whole_number
from .output import check_writable

#: The notebooks shipped in the repository's ``notebooks/`` folder, by the name ``--notebook`` takes.
SHIPPED_NOTEBOOKS = ("audit_report", "findings", "investigate", "port_heatmap", "rule_usage")
#: Where a wheel puts them: pyproject's ``data-files``, under the environment's prefix.
INSTALLED_NOTEBOOKS = Path("share") / "sgaudit" / "notebooks"


def _notebooks_dir() -> Path:
    """The folder the shipped notebooks are read from.

    Installed editable from a clone (the README's way), they are the clone's own ``notebooks/``
    (toolkit/sgaudit → ../../notebooks), so that an edited notebook is the one that runs. Installed from a
    wheel, they are ``<prefix>/share/sgaudit/notebooks``.
    """
    clone = Path(__file__).resolve().parents[2] / "notebooks"
    if clone.is_dir():
        return clone
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix, site.getuserbase())):
        installed = Path(prefix) / INSTALLED_NOTEBOOKS
        if installed.is_dir():
            return installed
    return clone


NOTEBOOKS_DIR = _notebooks_dir()
#: Parameters that name files or folders: made absolute before the notebook runs in its own folder.
PATH_PARAMETERS = ("flow_logs", "inventory")

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = ("Interactive explorer: open the notebook written beside this report (the same name, ending in "
               ".ipynb) in JupyterLab to use it.")

# Cell tags that leave a cell, or its outputs, out of the report (Jupyter Book's names). Code inputs are
# left out of every report anyway.
REMOVE_CELL_TAG, REMOVE_OUTPUT_TAG = "remove-cell", "remove-output"

_TEMPLATE_NAME = "sgaudit_report.html.j2"
# nbconvert's lab template, minus every block that loads a script from a CDN. require.js would also turn
# the embedded plotly.js into an AMD module (no window.Plotly), so leaving it out is what makes figures draw.
# Math in markdown stays as written (no MathJax); sgaudit's notebooks have none.
_TEMPLATE = """\
{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}
<style>
/* A code cell with neither its input (left out of every report) nor an output takes no room: the set-up
   cells drew an empty band between the introduction and the first result. */
.jp-CodeCell.jp-mod-noInput.jp-mod-noOutputs {display: none}
</style>
{%- endblock extra_css -%}
"""


class ReportError(SgauditError):
    """A report that cannot be made: unknown notebook or parameter, bad output path, kernel, network use."""


class NotebookExecutionError(ReportError):
    """A notebook cell raised; the executed notebook, with the traceback, is saved at ``executed``.

    Attributes
    ----------
    cell : int
        The failing cell's number in the notebook (1-based, markdown cells counted, as in JupyterLab).
    source : str
        The cell's source.
    ename, evalue : str
        The exception's name and value.
    executed : Path
        The executed notebook, saved with the error.
    """

    def __init__(self, message: str, *, cell: int, source: str, ename: str, evalue: str, executed: Path):
        super().__init__(message)
        self.cell, self.source, self.ename, self.evalue, self.executed = cell, source, ename, evalue, executed


@dataclass(frozen=True)
class Report:
    """The files `run` wrote.

    Attributes
    ----------
    html : Path
        The self-contained HTML report.
    notebook : Path
        The executed notebook beside it (same name, ``.ipynb``).
    """

    html: Path
    notebook: Path

    @property
    def size(self) -> int:
        """The HTML file's size in bytes."""
        return self.html.stat().st_size


def _known_notebooks() -> list[str]:
    """The shipped names plus any other notebook the lead drops into ``notebooks/``."""
    found = {p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb")} if NOTEBOOKS_DIR.is_dir() else set()
    return sorted(set(SHIPPED_NOTEBOOKS) | found)


def notebook_path(name: str | os.PathLike) -> Path:
    """The notebook a ``--notebook`` value names: a shipped notebook's name, or the path of any ``.ipynb``.

    Parameters
    ----------
    name : str or path-like
        ``audit_report``, ``findings``, ``investigate``, ``port_heatmap``, ``rule_usage``, or a path to a
        notebook.

    Returns
    -------
    Path
        The notebook, absolute.

    Raises
    ------
    ReportError
        For an unknown name (the message lists the known ones and the closest match), a path that does not
        exist, or a shipped notebook missing from the ``notebooks/`` folder.
    """
    text = os.fspath(name)
    known = _known_notebooks()
    if text.endswith(".ipynb") or os.sep in text or "/" in text or (text not in known and Path(text).is_file()):
        path = Path(text).expanduser()
        if not path.is_file():
            raise ReportError(f"notebook {text}: no such file; give the path of an .ipynb file or one of the "
                              f"shipped notebooks: {', '.join(known)}")
        _check_notebook(path)
        return path.resolve()
    if text not in known:
        close = difflib.get_close_matches(text, known, n=1)
        hint = f" (closest match: {close[0]})" if close else ""
        raise ReportError(f"unknown notebook {text!r}{hint}; the shipped notebooks are {', '.join(known)}, "
                          "or give the path of an .ipynb file")
    path = NOTEBOOKS_DIR / f"{text}.ipynb"
    if not path.is_file():
        raise ReportError(f"the shipped notebook {text!r} is missing: {path} does not exist (sgaudit reads its "
                          "notebooks from the clone it is installed from with pip install -e ., or from "
                          f"<prefix>/{INSTALLED_NOTEBOOKS.as_posix()} when installed from a wheel)")
    return path


def _check_notebook(path: Path) -> None:
    """Fail with a `ReportError` on a file that is not a Jupyter notebook nbformat can read."""
    try:
        nb = nbformat.read(path, as_version=4)
        if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
            raise ValueError("no list of cells")
    except Exception as exc:  # noqa: BLE001 - nbformat raises JSON, schema, type and decoding errors alike
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ReportError(f"notebook {path}: not a Jupyter notebook ({reason[:200]}); give an .ipynb file saved "
                          "by JupyterLab or Jupyter") from None


def notebook_kernel(notebook: str | os.PathLike, kernel_name: str | None = None) -> str:
    """The Jupyter kernel a notebook runs in: ``kernel_name`` when given, else the one its metadata names.

    Raises
    ------
    ReportError
        When neither names one (a notebook written by a tool that leaves out ``kernelspec``).
    """
    if kernel_name:
        return kernel_name
    path = notebook_path(notebook)
    name = (nbformat.read(path, as_version=4).metadata.get("kernelspec") or {}).get("name")
    if not name:
        raise ReportError(f"notebook {path.name} names no Jupyter kernel in its metadata (kernelspec); name one: "
                          "sgaudit report --kernel python3, or kernel_name='python3'")
    return name


def notebook_parameters(notebook: str | os.PathLike, kernel_name: str | None = None) -> dict[str, dict[str, str]]:
    """The parameters a notebook declares in its cell tagged ``parameters``, in order.

    Parameters
    ----------
    notebook : str or path-like
        A shipped notebook's name or a notebook's path (see `notebook_path`).
    kernel_name : str, optional
        The kernel it will run in, for a notebook whose metadata names none (see `notebook_kernel`).

    Returns
    -------
    dict
        Parameter name → ``{"name", "inferred_type_name", "default", "help"}`` (papermill's
        ``inspect_notebook``: ``default`` is the source text, ``help`` the trailing comment). Empty when the
        notebook has no ``parameters`` cell.
    """
    from papermill.iorw import load_notebook_node
    from papermill.translators import papermill_translators
    from papermill.utils import find_first_tagged_cell_index

    # What papermill.inspect_notebook does, with the kernel given here when the metadata has none.
    path = notebook_path(notebook)
    nb = load_notebook_node(str(path))
    index = find_first_tagged_cell_index(nb, "parameters")
    if index < 0:
        return {}
    kernel = notebook_kernel(path, kernel_name)
    translator = papermill_translators.find_translator(kernel, _language(nb, kernel) or "python")
    return {p.name: p._asdict() for p in translator.inspect(nb.cells[index])}


def _language(nb: nbformat.NotebookNode, kernel: str) -> str | None:
    """The notebook's language: from its metadata, else from the installed kernel's spec (None if unknown)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    language = ((nb.metadata.get("kernelspec") or {}).get("language")
                or (nb.metadata.get("language_info") or {}).get("name"))
    if language:
        return language
    try:
        return KernelSpecManager().get_kernel_spec(kernel).language
    except NoSuchKernel:
        return None


# YAML 1.1 reads 2025-02-06 as a date, which papermill would pass as ``datetime.date(…)`` source text, and
# the notebooks take times as strings (ISO 8601, as --start/--end do): keep every timestamp a string.
class _Loader(yaml.SafeLoader):
    pass


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_parameter_value(text: str) -> Any:
    """A ``-p NAME VALUE`` value read as YAML, as papermill's ``-y`` reads it: ``3`` → 3, ``[a, b]`` → a list.

    Dates and times stay strings. Text that is not valid YAML is taken as it is.
    """
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError:
        return text


def read_parameters_file(path: str | os.PathLike) -> dict[str, Any]:
    """Notebook parameters from a YAML file holding one mapping (name: value); dates and times stay strings.

    Raises
    ------
    ReportError
        For a missing file, invalid YAML (with the line), or a document that is not a mapping.
    """
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as f:
            data = yaml.load(f, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except OSError as exc:
        raise ReportError(f"parameters file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ReportError(f"parameters file {path}: byte {exc.start} is not UTF-8; save the file as UTF-8 "
                          "text") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f", line {where.line + 1}" if where is not None else ""
        raise ReportError(f"parameters file {path}{line}: not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ReportError(f"parameters file {path}: expected a mapping of parameter names to values "
                          f"(name: value, one a line), found {type(data).__name__}")
    odd = [k for k in data if not isinstance(k, str)]
    if odd:
        raise ReportError(f"parameters file {path}: {odd[0]!r} is not a parameter name; names are text "
                          "(name: value, one a line)")
    return data


def _check_parameters(path: Path, parameters: Mapping[str, Any], kernel_name: str) -> dict[str, Any]:
    """The parameters, checked against what the notebook declares; a list parameter given one text a list of it.

    Fails on a parameter the notebook does not declare (papermill would only log a warning and go on), and
    on a value of another type than the parameter's annotation (``top: int``): the notebook would otherwise
    run for a while and fail in a cell, or read ``maybe`` as true.
    """
    if not parameters:
        return {}
    declared = notebook_parameters(path, kernel_name)
    if not declared:
        raise ReportError(f"notebook {path.name} has no cell tagged 'parameters', so it takes no parameters "
                          f"(given: {', '.join(parameters)})")
    unknown = [name for name in parameters if name not in declared]
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, list(declared), n=1)
            hints.append(f"{name!r}" + (f" (closest match: {close[0]})" if close else ""))
        listing = "\n".join(f"  {p['name']} = {p['default']}" + (f"  # {p['help']}" if p["help"] else "")
                            for p in declared.values())
        raise ReportError(f"notebook {path.name} has no parameter {', '.join(hints)}; its parameters are:\n"
                          + listing)
    checked = {}
    for name, value in parameters.items():
        kind = declared[name]["inferred_type_name"]
        if kind == "list" and isinstance(value, str):
            value = [value]
        if value is not None and not _PARAMETER_TYPES.get(kind, lambda v: True)(value):
            raise ReportError(f"notebook {path.name}: parameter {name} is {kind} ({name} = "
                              f"{declared[name]['default']}), not {value!r}; e.g. -p {name} "
                              f"{_PARAMETER_EXAMPLES.get(kind, '…')}")
        checked[name] = value
    _check_inputs(path, declared, checked)
    if checked.get("time_bucket") not in (None, "", "auto"):
        # Checked now as far as it can be without the window, not after the analysis a cell starts with.
        from .timeline import choose_bucket

        try:
            choose_bucket((None, None), checked["time_bucket"])
        except SgauditError as exc:
            raise ReportError(f"notebook {path.name}: {exc}") from None
    return checked


#: The two inputs of an analysis, with their flags.
_INPUTS = {"flow_logs": "--flow-logs", "inventory": "--inventory"}


def _check_inputs(path: Path, declared: Mapping[str, Any], given: Mapping[str, Any]) -> None:
    """Refuse one of the flow logs and the inventory given alone when the other's default is the sample's.

    The shipped notebooks default to the bundled sample account, so that they run as they are; an auditor's
    snapshot read against the sample's flow logs (or the reverse) would give a report of nothing real that
    only blames "another account or region".
    """
    alone = [name for name in _INPUTS if name in given]
    if len(alone) != 1 or not set(_INPUTS) <= set(declared):
        return
    missing = next(name for name in _INPUTS if name not in given)
    default = str(declared[missing]["default"])
    if "sample_logs" in default:
        raise ReportError(f"notebook {path.name}: {alone[0]} is given but not {missing}, whose default is the "
                          f"bundled sample account's ({default}); give {_INPUTS[missing]} ({missing}) too, so that "
                          "both come from the same account")


#: What a value of each annotated parameter type may be (times and paths may also come as numbers).
_PARAMETER_TYPES = {
    "int": whole_number,
    "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "list": lambda v: isinstance(v, list | tuple),
    "str": lambda v: isinstance(v, str | int | float | os.PathLike) and not isinstance(v, bool),
}
_PARAMETER_EXAMPLES = {"int": "10", "float": "0.5", "bool": "true", "list": "'[a, b]'", "str": "text"}


def _absolute_paths(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters with `PATH_PARAMETERS` made absolute: the notebook runs in its own folder, not here."""
    def absolute(value: Any) -> Any:
        if isinstance(value, str | os.PathLike) and "://" not in os.fspath(value):
            return os.path.abspath(os.path.expanduser(os.fspath(value)))
        if isinstance(value, list | tuple):
            return [absolute(v) for v in value]
        return value

    return {name: absolute(value) if name in PATH_PARAMETERS else value for name, value in parameters.items()}


def _source_cell_number(notebook: Path, source: str, executed_index: int) -> int:
    """The 1-based number, in the notebook as written, of the cell papermill reports at ``executed_index``.

    papermill counts cells of the executed notebook, which has the injected-parameters cell added; the
    cell is found by its source instead (the nearest one if several cells hold the same source).
    """
    cells = nbformat.read(notebook, as_version=4).cells
    matches = [i for i, cell in enumerate(cells) if cell.source == source]
    if not matches:
        return executed_index + 1
    return min(matches, key=lambda i: abs(i - executed_index)) + 1


def _kernel_manager_config() -> Any:
    """Encrypt the kernel's local connection when pyzmq can and the kernel says it supports it.

    Besides being better, this keeps ipykernel 7's "Kernel is running over TCP without encryption"
    warning off the user's terminal. An older jupyter_client has no such setting: then nothing changes.
    """
    import zmq
    from jupyter_client import AsyncKernelManager
    from traitlets.config import Config

    if "transport_encryption" not in AsyncKernelManager.class_trait_names() or not zmq.has("curve"):
        return None
    return Config({"AsyncKernelManager": {"transport_encryption": "auto"}})


def _quiet_kernel(kernel_name: str) -> list[str]:
    """Arguments that keep an IPython kernel's own log off the run's stderr.

    jupyter_client interrupts a kernel before shutting it down; an IPython kernel that is still busy then logs
    "[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel", which read as a failure in a scheduled
    report's log although the report was written. What matters of a kernel reaches the notebook (a cell's
    error) or papermill (a dead kernel). Other kernels may not take the option, so they get none.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        argv = KernelSpecManager().get_kernel_spec(kernel_name).argv
    except NoSuchKernel:
        return []
    return ["--IPKernelApp.log_level=CRITICAL"] if any("ipykernel" in a for a in argv) else []


def run(notebook: str | os.PathLike, out_html: str | os.PathLike, parameters: Mapping[str, Any] | None = None,
        *, kernel_name: str | None = None, progress: bool = True) -> Report:
    """Execute a notebook with papermill and export it as a self-contained HTML report.

    Parameters
    ----------
    notebook : str or path-like
        A shipped notebook's name (``audit_report``, ``rule_usage``, ``port_heatmap``, ``investigate``,
        ``findings``) or the path of any ``.ipynb``.
    out_html : str or path-like
        The report to write, ``.html``. The executed notebook is written beside it with the suffix
        ``.ipynb``; an earlier report at ``out_html`` is removed first, so a failed run leaves none behind.
    parameters : mapping, optional
        Values for the notebook's ``parameters`` cell; names it does not declare, and values of another
        type than a parameter's annotation, are errors (one text for a list is a list of it). Relative
        paths in ``flow_logs`` and ``inventory`` are taken from the current directory; the notebook runs in
        its own folder, so its relative defaults are taken from there.
    kernel_name : str, optional
        The Jupyter kernel; default the one the notebook names (``python3``).
    progress : bool
        papermill's progress bar on standard error, drawn only on a terminal.

    Returns
    -------
    Report
        The HTML report and the executed notebook.

    Raises
    ------
    NotebookExecutionError
        When a cell raises: the message names the cell (its number and first line), the exception, and the
        executed notebook saved with the traceback. No HTML is written.
    ReportError
        For an unknown notebook or parameter, an output path that is not ``.html``, an unknown kernel or
        none named, or an output that would load something from the network.
    """
    import papermill
    from jupyter_client.kernelspec import NoSuchKernel

    path = notebook_path(notebook)
    out_html = Path(out_html)
    if out_html.suffix.lower() not in (".html", ".htm"):
        raise ReportError(f"report {out_html}: the report is an HTML file; give a name ending in .html")
    check_writable(out_html)
    executed = out_html.with_suffix(".ipynb")
    parameters = dict(parameters or {})
    kernel_name = notebook_kernel(path, kernel_name)
    language = _language(nbformat.read(path, as_version=4), kernel_name)
    parameters = _absolute_paths(_check_parameters(path, parameters, kernel_name))

    out_html.parent.mkdir(parents=True, exist_ok=True)
    out_html.unlink(missing_ok=True)
    config = _kernel_manager_config()
    try:
        # No save at every cell (papermill's default saves twice per cell): on a big account the executed
        # notebook reaches ~180 MB and each save took ~6 s, 200 of a 300 s report. It is written once at the
        # end, or, when a cell fails, with the traceback.
        papermill.execute_notebook(
            str(path), str(executed), parameters=parameters, kernel_name=kernel_name, language=language,
            progress_bar=progress and sys.stderr.isatty(), log_output=False, cwd=str(path.parent),
            request_save_on_cell_execute=False, extra_arguments=_quiet_kernel(kernel_name),
            **({"config": config} if config is not None else {}),
        )
    except papermill.PapermillExecutionError as exc:
        number = _source_cell_number(path, exc.source, exc.cell_index)
        first = next((line.strip() for line in exc.source.splitlines() if line.strip()), "")
        raise NotebookExecutionError(
            f"notebook {path.name} failed in cell {number} ({first!r}): {exc.ename}: {exc.evalue}\n"
            f"The executed notebook, with the traceback, is saved at {executed}; no report was written.",
            cell=number, source=exc.source, ename=exc.ename, evalue=exc.evalue, executed=executed,
        ) from exc
    except NoSuchKernel as exc:
        from jupyter_client.kernelspec import find_kernel_specs

        raise ReportError(f"notebook {path.name}: no Jupyter kernel named {exc.name!r} (installed: "
                          f"{', '.join(sorted(find_kernel_specs())) or 'none'}); install one with "
                          "python -m ipykernel install --sys-prefix, or name an installed one (kernel_name, "
                          "sgaudit report --kernel)") from exc
    export_html(executed, out_html)
    return Report(html=out_html, notebook=executed)


def strip_widgets(nb: nbformat.NotebookNode) -> int:
    """Replace every ipywidgets output with `WIDGET_NOTE` and drop the saved widget state, in place.

    Widgets need a live kernel, or the widget renderer and require.js from CDNs; in an offline report they
    would be blank boxes. Returns the number of outputs replaced.
    """
    replaced = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if WIDGET_VIEW in output.get("data", {}):
                output["data"] = {"text/plain": WIDGET_NOTE}
                output["metadata"] = {}
                replaced += 1
    nb.metadata.pop("widgets", None)
    return replaced


def _title(nb: nbformat.NotebookNode, path: Path) -> str:
    """The notebook's ``metadata.title``, else its first ``# heading``, else its file name."""
    if nb.metadata.get("title"):
        return str(nb.metadata["title"])
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return path.stem


def export_html(executed: str | os.PathLike, out_html: str | os.PathLike) -> Path:
    """Export an executed notebook as one self-contained HTML file that makes no request.

    nbconvert's ``lab`` template with code inputs and prompts hidden (prose, tables and figures remain),
    markdown images embedded, cells tagged ``remove-cell`` and outputs of cells tagged ``remove-output`` left out,
    widgets replaced by a note (`strip_widgets`), and no CDN script (see ``_TEMPLATE``).

    Parameters
    ----------
    executed : str or path-like
        An executed notebook.
    out_html : str or path-like
        The HTML file to write; written whole or not at all.

    Returns
    -------
    Path
        ``out_html``.

    Raises
    ------
    ReportError
        When an output would still load something from the network (`external_references`).
    """
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    executed, out_html = Path(executed), Path(out_html)
    nb = nbformat.read(executed, as_version=4)
    strip_widgets(nb)
    title = _title(nb, executed)
    nb.metadata["title"] = title
    exporter = HTMLExporter(
        template_name="lab", extra_loaders=[DictLoader({_TEMPLATE_NAME: _TEMPLATE})], template_file=_TEMPLATE_NAME,
        exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True, embed_images=True,
    )
    exporter.register_preprocessor(TagRemovePreprocessor(
        remove_cell_tags={REMOVE_CELL_TAG}, remove_all_outputs_tags={REMOVE_OUTPUT_TAG}), enabled=True)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title, "path": str(executed.parent)}})
    external = external_references(body)
    if external:
        shown = ", ".join(external[:5]) + (f" and {len(external) - 5} more" if len(external) > 5 else "")
        raise ReportError(f"report {out_html}: the notebook's outputs load {shown} from the network, so the report "
                          "would not work offline; call sgaudit.notebook.setup() in the first code cell and "
                          f"embed what the outputs need (executed notebook: {executed})")
    tmp = out_html.with_name(out_html.name + ".tmp")
    tmp.write_text(body, encoding="utf-8")
    tmp.replace(out_html)
    return out_html


# Elements and attributes a browser fetches by itself. <a href> is not fetched, so links stay allowed.
_FETCHED = {
    "script": ("src",), "link": ("href",), "img": ("src", "srcset"), "iframe": ("src",), "frame": ("src",),
    "source": ("src", "srcset"), "video": ("src", "poster"), "audio": ("src",), "track": ("src",),
    "embed": ("src",), "object": ("data",), "input": ("src",), "image": ("href", "xlink:href"),
    "use": ("href", "xlink:href"),
}
_REMOTE = re.compile(r"^\s*(?:https?:)?//", re.IGNORECASE)
_REMOTE_IN_TEXT = re.compile(
    r"""url\(\s*["']?\s*((?:https?:)?//[^"')\s]+)"""                      # CSS url(...)
    r"""|@import\s+["']((?:https?:)?//[^"']+)"""                            # CSS @import "..."
    r"""|\bimport\s*(?:\(\s*|[\w{}\s,*]+\bfrom\s*)["']((?:https?:)?//[^"']+)""",  # ES module imports
    re.IGNORECASE,
)


class _References(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._tag: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag = tag
        for name, value in attrs:
            if value is None:
                continue
            if name in _FETCHED.get(tag, ()):
                urls = [u.split()[0] for u in value.split(",") if u.strip()] if name == "srcset" else [value]
                self.found += [u.strip() for u in urls if _REMOTE.match(u)]
            elif name == "style":
                self._text(value)

    def handle_data(self, data: str) -> None:
        if self._tag in ("script", "style"):
            self._text(data)

    def _text(self, text: str) -> None:
        self.found += [next(g for g in m.groups() if g) for m in _REMOTE_IN_TEXT.finditer(text)]


def external_references(html_text: str) -> list[str]:
    """Every URL off the page that the HTML would fetch by itself, in document order.

    Attributes a browser loads (``<script src>``, ``<link href>``, ``<img src>``, ``<iframe src>``, …),
    CSS ``url(…)`` and ``@import`` in ``<style>`` and ``style=``, and ES module ``import`` in scripts, when
    they name an ``http(s)://`` or protocol-relative URL. Links (``<a href>``) and URLs that scripts only
    hold as strings are not counted; the browser test (``tests/browser.py``) catches what this misses.
    """
    parser = _References()
    parser.feed(html_text)
    parser.close()
    return parser.found
