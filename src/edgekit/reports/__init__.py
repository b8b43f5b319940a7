"""edgekit.reports: what people read from the records `edgekit run` writes.

:class:`Record` is the one typed view of a record (one line of results.jsonl); every report reads
through it. The public functions take dicts (as the pipeline produces them) or Records:

- :func:`load_records`, :func:`latest_records`: results files back into Records;
- :func:`table` (console), :func:`markdown`, :func:`html_report` / :func:`write_html`,
  :func:`csv_report` / :func:`write_csv`, and :func:`write_reports` for all the files at once;
- :func:`log_records`: MLflow runs (MLflow imported only when called).
"""
from .charts import pareto_front
from .csv_report import CSV_COLUMNS, csv_report, write_csv
from .html import html_report, write_html
from .record import STATUS_TEXT, Bench, DataInfo, DeviceRef, OutputParity, Parity, Record, SourceTask, status_text
from .results import as_records, latest_records, load_records
from .tables import markdown, table, write_reports
from .tracking import TrackingWarning, check_available, default_tracking_uri, log_records

__all__ = ["Record", "Parity", "OutputParity", "Bench", "DeviceRef", "DataInfo", "SourceTask", "STATUS_TEXT",
           "status_text", "as_records", "load_records", "latest_records", "table", "markdown", "html_report",
           "write_html", "csv_report", "write_csv", "CSV_COLUMNS", "write_reports", "pareto_front", "log_records",
           "TrackingWarning", "check_available", "default_tracking_uri"]
