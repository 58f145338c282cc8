"""The HTML report of a collection: pages with boxes by predicted identity, galleries, mistakes, metrics.

Library entry points (the ``comicid report`` command is a thin shell over them)::

    from comicid.report import ReportOptions, write_report
    write_report(Collection.open("my-collection"), "report.html", ReportOptions(max_pages_per_book=5))
"""

from comicid.report.html import ReportOptions, build_report, instance_table, mark_mistakes, write_report

__all__ = ["ReportOptions", "build_report", "instance_table", "mark_mistakes", "write_report"]
