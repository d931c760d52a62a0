"""One monitoring check: the served model's current data (its prediction log over a window,
or a file) against its reference (the training data of the serving version, found through
the lineage of its dvc.lock, or a file): feature drift, prediction drift, and the share of
current rows the input contract would refuse."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlbuild.errors import UsageError
from mlbuild.monitor import config
from mlbuild.monitor.drift import ColumnRule, DriftSettings, column_drift, dataset_drift
from mlbuild.monitor.report import ContractShare, MonitorReport
from mlbuild.monitor.sources import Sample, lineage_reference, read_table

META = ("_prediction", "_version", "_role", "_request_id", "_row", "_time")
MAX_CONTRACT_ROWS = 20_000  # rows checked one by one when the whole sample fails its contract


@dataclass(frozen=True)
class Request:
    """What `mlbuild monitor` was asked."""

    model: str | None  # NAME, NAME@VERSION, NAME#STAGE or a model file; None: files only
    reference: Path | None  # None: through lineage
    current: Path | None  # None: the model's prediction log
    since: float | None  # seconds back from now (prediction log only)
    log_dir: Path | None = None
    labels: Path | None = None  # request_id, label (, row): the served rows' true answers
    only_version: bool = False  # only rows the named version answered (not its predecessors)


@dataclass(frozen=True)
class Checked:
    """The report and the two samples it was computed on (for the HTML page)."""

    report: MonitorReport
    reference: Any
    current: Any


def _current(root: Path, request: Request, source: Any) -> Sample:
    if request.current is not None:
        return Sample(read_table(request.current, "current data"), str(request.current))
    if source is None:
        raise UsageError("name the model whose prediction log to read, or give --current FILE")
    from mlbuild.monitor.served import read
    from mlbuild.serve.predlog import default_dir

    name = source.name
    folder = request.log_dir or default_dir(root, name)
    since = time.time() - request.since if request.since else None
    served = read(folder, since, name)
    frame = served.frame
    if len(frame):
        frame = frame[frame["_role"] != "shadow"]  # a shadow scores a copy of a request
        if request.only_version:
            frame = frame[frame["_version"] == source.version]
    window = f" in the last {request.since:g} s" if request.since else ""
    window += f" answered by {source.version}" if request.only_version else ""
    if not len(frame):
        raise UsageError(f"no served rows of model '{name}'{window} in {folder} "
                         f"({served.files} log file(s)); serve it with 'mlbuild serve' first")
    skipped = f", {served.skipped_lines} unreadable line(s) skipped" if served.skipped_lines else ""
    return Sample(frame.reset_index(drop=True), f"prediction log {folder}{window}{skipped}",
                  everything=served.frame)


def _features(reference: Any, current: Any, loaded: Any) -> list[str]:
    if loaded is not None:
        names = list(loaded.contract.names)
    else:
        names = [c for c in reference.columns if c in set(current.columns) and c not in META]
    for what, frame in (("reference", reference), ("current", current)):
        missing = [n for n in names if n not in frame.columns]
        if missing:
            raise UsageError(f"the {what} data lacks feature column(s) "
                             f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if not names:
        raise UsageError("the reference and current data share no column")
    return names


def _contract_share(contract: Any, frame: Any) -> ContractShare:
    from mlbuild.serve.contract import ContractViolation

    try:
        contract.check(frame)
        return ContractShare(len(frame), 0, None)
    except ContractViolation as exc:
        first = str(exc)
    sample = frame.head(MAX_CONTRACT_ROWS)
    failing = 0
    for start in range(len(sample)):
        try:
            contract.check(sample.iloc[start:start + 1])
        except ContractViolation:
            failing += 1
    return ContractShare(len(sample), failing, first)


def _prediction_drift(loaded: Any, reference: Any, current: Any, names: list[str]) -> Any:
    from mlbuild.serve.contract import ContractViolation

    try:
        ref_pred = loaded.model.predict(loaded.contract.check(reference[names]))
        cur_pred = (current["_prediction"] if "_prediction" in current.columns
                    else loaded.model.predict(loaded.contract.check(current[names])))
    except ContractViolation:
        return None  # rows the model refuses: the contract share reports them
    import pandas as pd

    classifier = hasattr(loaded.model, "classes_")
    return column_drift("prediction", pd.Series(ref_pred), pd.Series(list(cur_pred)),
                        ColumnRule(), "categorical" if classifier else "numerical")


def _reference(root: Path, request: Request, source: Any) -> Sample:
    if request.reference is not None:
        return Sample(read_table(request.reference, "reference data"), str(request.reference))
    if source is not None and source.commit:
        return lineage_reference(root, source.name, source.commit,
                                 config.reference_path(root, source.name))
    raise UsageError("no reference: give --reference FILE, or name a registered model "
                     "version whose training data lineage can find")


def check(root: Path, request: Request) -> Checked:
    """Run one check (UsageError for input it cannot compare)."""
    from mlbuild.serve.source import resolve

    source = resolve(root, request.model) if request.model else None
    reference = _reference(root, request, source)
    current = _current(root, request, source)
    # unpickled only now: a mistake in the data is reported without paying for the model's
    # imports (scikit-learn alone takes seconds)
    loaded = _load(root, source) if source is not None else None
    names = _features(reference.frame, current.frame, loaded)
    settings = config.settings(root, loaded.source.name) if loaded else DriftSettings()
    data = dataset_drift(reference.frame[names], current.frame[names], settings)
    skipped = []
    prediction = contract = None
    if loaded is not None:
        prediction = _prediction_drift(loaded, reference.frame, current.frame, names)
        if prediction is None:
            skipped.append("prediction drift: the reference data breaks the input contract")
        contract = _contract_share(loaded.contract, current.frame[names])
    else:
        skipped.append("prediction drift and contract: no model named")
    perf = _performance(root, request, loaded, current.frame) if request.labels else None
    if isinstance(perf, str):
        skipped.append(f"performance: {perf}")
        perf = None
    versions = None
    if current.everything is not None:
        from mlbuild.monitor.compare import compare
        from mlbuild.monitor.labels import read_labels

        labels = read_labels(request.labels) if request.labels else None
        versions = compare(current.everything, labels)
    report = MonitorReport(loaded.source.name if loaded else None,
                           loaded.source.version if loaded else None, reference.source,
                           current.source, data, prediction, contract, perf, tuple(skipped),
                           {"versions": versions} if versions else {})
    return Checked(report, reference.frame[names], current.frame[names])


def _performance(root: Path, request: Request, loaded: Any, current: Any) -> Any:
    from mlbuild.monitor.labels import performance, read_labels
    from mlbuild.registry.evidence import gather

    assert request.labels is not None
    labels = read_labels(request.labels)
    if loaded is None or not loaded.source.commit:
        return "no registered version to compare with"
    registered = gather(root, loaded.source.name, loaded.source.commit).metrics
    return performance(current, labels, registered)


def _load(root: Path, source: Any) -> Any:
    from mlbuild.serve.service import load_version

    return load_version(root, source)
